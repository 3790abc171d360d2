//! `/v1/lockouts`: manual lockouts and their restore (responder), a lockout's status (viewer), and
//! the `Idempotency-Key` handling every responder route shares.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::wire::LockoutsQuery;
use super::{ApiError, ApiState, Caller, pipeline_of, store_of};
use crate::lockout::{self, LockoutRequest};

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is ideal)".into(),
        )
    };
    let k = v.to_str().map_err(|_| bad())?.trim();
    if k.is_empty() || k.len() > 255 {
        return Err(bad());
    }
    Ok(Some(k.to_string()))
}

/// The request id to use: a fresh one, or the one an earlier request with the same
/// `Idempotency-Key` (and the same `fingerprint`) claimed.
pub(super) async fn request_id(
    s: &ApiState,
    headers: &HeaderMap,
    caller: &Caller,
    scope: &str,
    fingerprint: &str,
) -> Result<String, ApiError> {
    match idempotency_key(headers)? {
        None => Ok(lockout::new_id()),
        Some(key) => Ok(lockout::claim_idempotency_key(
            store_of(s)?.as_ref(),
            &caller.name,
            scope,
            &key,
            fingerprint,
            lockout::new_id,
        )
        .await?),
    }
}

pub(super) async fn post_lockout(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: LockoutRequest = crate::json::from_slice_as(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!(
                "body must be JSON {{subject, reason, connectors?, operations?, ticket?}}: {e}"
            ),
        )
    })?;
    let pipeline = pipeline_of(&s)?;
    let id = request_id(&s, &headers, &caller, "lockout", &req.fingerprint()).await?;
    let created = lockout::create(pipeline, &req, &id, &caller.name).await?;
    info!(lockout_id = %created.id, caller = %caller.name, %peer, "lockout requested");
    Ok((StatusCode::ACCEPTED, Json(created)).into_response())
}

/// `GET /v1/lockouts` (viewer): lockouts newest first, a page at a time (`limit`, `before`).
pub(super) async fn list_lockouts(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
    q: Result<Query<LockoutsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{e}; use limit, before, id_prefix and subject"),
        )
    })?;
    let page = lockout::list(
        store_of(&s)?.as_ref(),
        &lockout::LockoutQuery {
            limit: q.limit.unwrap_or(50),
            before: q.before,
            id_prefix: q.id_prefix,
            subject: q.subject.map(|s| crate::plan::normalize_subject(&s)),
        },
    )
    .await?;
    Ok(Json(page).into_response())
}

pub(super) async fn get_lockout(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let status = lockout::status(store_of(&s)?.as_ref(), &id).await?;
    Ok(Json(status).into_response())
}

pub(super) async fn restore_lockout(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&s)?;
    // Restores are idempotent by construction; the key is still honoured so that reusing one for a
    // different target is refused rather than silently ignored.
    request_id(&s, &headers, &caller, "restore", &format!("lockout:{id}")).await?;
    let restored = lockout::restore_lockout(pipeline, &id, &caller.name).await?;
    info!(lockout_id = %id, caller = %caller.name, %peer, "lockout restore requested");
    Ok((StatusCode::ACCEPTED, Json(restored)).into_response())
}
