//! `/v1/approvals`: held actions (viewer) and their approval or rejection (approver, never the
//! requester).
//!
//! `Idempotency-Key` on a decision: a client retrying the same decision after a lost answer gets
//! the action as it is now, not a 409 for a decision it made itself; a different decision under
//! one key is 422. Only a decision that was *made* is remembered under its key: a refusal (a
//! self-approval, an expired or unknown action) stores nothing, so a retry is decided again and
//! refused again — never replayed as a success.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::lockouts::idempotency_key;
use super::wire::{ApprovalList, ApprovalsQuery, DecisionBody, optional_body};
use super::{ApiError, ApiState, Caller, error::unavailable, pipeline_of, store_of};
use crate::lockout;

/// `GET /v1/approvals`: actions awaiting approval, newest first, each with `requested_by` and
/// `expires_at`.
pub(super) async fn list_approvals(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
    q: Result<Query<ApprovalsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(super::error::bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let approvals = crate::approval::list(store_of(&s)?.as_ref(), limit)
        .await
        .map_err(unavailable)?;
    Ok(Json(ApprovalList { approvals }).into_response())
}

async fn decide(
    s: Arc<ApiState>,
    peer: SocketAddr,
    caller: Caller,
    headers: HeaderMap,
    key: String,
    body: axum::body::Bytes,
    verdict: crate::approval::Verdict,
) -> Result<Response, ApiError> {
    let b: DecisionBody = optional_body(&body, "{\"comment\": \"...\"}")?;
    let pipeline = pipeline_of(&s)?;
    let store = store_of(&s)?;
    let idem = idempotency_key(&headers)?;
    let fingerprint = format!(
        "{}:{key}:{}",
        verdict.as_str(),
        b.comment.as_deref().unwrap_or("")
    );
    // The current action, answered to a retry of a decision this caller already made.
    let replay = || async {
        let rec = pipeline
            .store
            .get_action(&key)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no action `{key}`"),
                )
            })?;
        Ok::<_, ApiError>(Json(rec).into_response())
    };
    let peek = |k: String| {
        let fingerprint = fingerprint.clone();
        let caller = caller.name.clone();
        async move {
            lockout::peek_idempotency_key(store.as_ref(), &caller, "approval", &k, &fingerprint)
                .await
                .map_err(ApiError::from)
        }
    };
    if let Some(k) = &idem {
        match peek(k.clone()).await? {
            Some(true) => return replay().await,
            Some(false) => {
                return Err(lockout::LockoutError::IdempotencyKeyReused(k.clone()).into());
            }
            None => {}
        }
    }
    let decided = crate::approval::decide(
        &pipeline.approvals,
        &key,
        verdict,
        caller.actor(peer),
        b.comment,
    )
    .await;
    let rec = match (decided, &idem) {
        (Ok(rec), _) => rec,
        // A twin of this request (same key, same decision) won the race: answer as it did.
        (
            Err(
                e @ (crate::approval::ApprovalError::NotAwaiting { .. }
                | crate::approval::ApprovalError::Busy(_)),
            ),
            Some(k),
        ) => {
            return match peek(k.clone()).await? {
                Some(true) => replay().await,
                _ => Err(e.into()),
            };
        }
        // A refusal stores nothing under the key: a retry is decided, and refused, again.
        (Err(e), _) => return Err(e.into()),
    };
    // Only a decision made is remembered, so a lost answer can be asked for again.
    if let Some(k) = &idem {
        let fresh = lockout::new_id();
        lockout::claim_idempotency_key(
            store.as_ref(),
            &caller.name,
            "approval",
            k,
            &fingerprint,
            || fresh.clone(),
        )
        .await?;
    }
    Ok(Json(rec).into_response())
}

/// The verdict a decision route gives: `POST /v1/approvals/{id}/approve` ([`Approve`]: the action
/// runs) and `…/reject` ([`Reject`]: it is cancelled), each for an approver or admin who is not the
/// requester.
pub(super) trait VerdictRoute {
    const VERDICT: crate::approval::Verdict;
}

/// `POST /v1/approvals/{id}/approve`.
pub(super) struct Approve;
impl VerdictRoute for Approve {
    const VERDICT: crate::approval::Verdict = crate::approval::Verdict::Approve;
}

/// `POST /v1/approvals/{id}/reject`.
pub(super) struct Reject;
impl VerdictRoute for Reject {
    const VERDICT: crate::approval::Verdict = crate::approval::Verdict::Reject;
}

/// `POST /v1/approvals/{id}/{approve,reject}`: the route's [`VerdictRoute`] on one held action.
pub(super) async fn verdict<V: VerdictRoute>(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    decide(s, peer, caller, headers, key, body, V::VERDICT).await
}
