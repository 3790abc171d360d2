//! The audit route layer: every authenticated call to a `/v1` route is an `api_call` record, written
//! here and not by the handlers, so no handler can forget it.
//!
//! For a route with an access rule ([`super::access`]) the layer authenticates the caller (401 is
//! not recorded: there is nobody to name, and recording it would let anyone fill the trail), checks
//! the role (a 403 *is* recorded, with outcome `forbidden`), runs the handler, and appends one record
//! with the route, the path, the query, the status, the outcome and the error code. When the trail
//! cannot take the record the answer is replaced by 503, so nothing is disclosed unrecorded.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::caller::{Caller, Delegated, peer};
use super::error::ErrorCode;
use super::serve::BodyDeadline;
use super::{ApiError, ApiState, AuditMode};
use crate::audit::{AuditDraft, AuditKind};

/// What became of a call, as recorded.
fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=399 => "ok",
        401 | 403 => "forbidden",
        400..=499 => "refused",
        _ => "failed",
    }
}

pub(crate) async fn layer(State(s): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let Some((route, access)) = route.and_then(|r| super::access(req.method(), &r).map(|a| (r, a)))
    else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let peer = peer(&parts);
    let set_errors = route == "/v1/ssf/{receiver}";
    // The console's calls come with their caller already signed in (see [`Delegated`]).
    let delegated = parts.extensions.remove::<Delegated>();
    let via = delegated.as_ref().map(|_| "console");
    let caller = match delegated {
        Some(Delegated(c)) => c,
        None => match Caller::authenticate(&s.tokens, &parts.headers) {
            Ok(c) => c,
            Err(e) if set_errors => return super::alerts::set_auth_error(e),
            Err(e) => return e.into_response(),
        },
    };
    let Some(store) = s.store.get().cloned() else {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the audit trail is not reachable yet, so no call can be served".into(),
        )
        .into_response();
    };
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let (status, code, response) = match caller.require(access.role) {
        Err(e) => {
            let status = e.0;
            let code = e.1;
            let response = if set_errors {
                super::alerts::set_auth_error(e)
            } else {
                e.into_response()
            };
            (status, Some(code), response)
        }
        Ok(()) => {
            // The handler's `Caller` extractor finds it here (checked just above, for a bearer
            // caller and a delegated one alike).
            parts.extensions.insert(caller.clone());
            let deadline = parts.extensions.get::<BodyDeadline>().cloned();
            let response = next.run(Request::from_parts(parts, body)).await;
            let status = if deadline.is_some_and(|d| d.missed()) {
                StatusCode::REQUEST_TIMEOUT
            } else {
                response.status()
            };
            let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
            (status, code, response)
        }
    };
    if access.audit == AuditMode::UnlessAccepted && status.is_success() {
        return response;
    }
    let mut d = AuditDraft::new(
        AuditKind::ApiCall,
        caller.actor(peer),
        serde_json::json!({
            "method": method.as_str(),
            "route": route,
            "path": uri.path(),
            "query": uri.query(),
            "status": status.as_u16(),
            "outcome": outcome(status),
            "code": code,
        }),
    );
    if let Some(via) = via {
        d.detail["via"] = via.into();
    }
    // The resource the call was about, so `GET /v1/audit?action_key=` finds who looked at it.
    let segment = || uri.path().split('/').nth(3).map(str::to_string);
    if route.starts_with("/v1/actions/{key}") || route.starts_with("/v1/approvals/{id}") {
        d.action_key = segment();
    } else if route.starts_with("/v1/lockouts/{id}") {
        d.detail["lockout_id"] = segment().into();
    }
    match store.append_audit(vec![d]).await {
        Ok(_) => response,
        Err(e) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "cannot write the audit trail, so the answer is withheld (anything the call \
                 changed is recorded by its own records): {e}"
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(outcome(StatusCode::ACCEPTED), "ok");
        assert_eq!(outcome(StatusCode::FORBIDDEN), "forbidden");
        assert_eq!(outcome(StatusCode::UNPROCESSABLE_ENTITY), "refused");
        assert_eq!(outcome(StatusCode::SERVICE_UNAVAILABLE), "failed");
    }
}
