//! `/v1/breaker`: the blast-radius breaker's state (viewer) and its reset (admin, audited); and
//! `/v1/policy/shadow` (viewer): what the shadow bundle would have done differently.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::wire::{BreakerReset, BreakerView, ResetBody, optional_body};
use super::{ApiError, ApiState, Caller, error::unavailable, pipeline_of};

pub(super) async fn breaker_status(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&s)?;
    let scopes = match &pipeline.approvals.breaker {
        Some(b) => b.status().await.map_err(unavailable)?,
        None => Vec::new(),
    };
    Ok(Json(BreakerView {
        enabled: pipeline.approvals.breaker.is_some(),
        open: scopes.iter().any(|x| x.open),
        scopes,
    })
    .into_response())
}

/// `POST /v1/breaker/reset` (admin only): close the breaker and empty its window; audited.
pub(super) async fn breaker_reset(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: ResetBody = optional_body(&body, "{\"scope\": \"global\"}")?;
    let pipeline = pipeline_of(&s)?;
    let Some(breaker) = &pipeline.approvals.breaker else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "breaker_disabled",
            crate::guard::BreakerError::Disabled.to_string(),
        ));
    };
    let was_open = breaker
        .reset(b.scope.as_deref(), caller.actor(peer))
        .await
        .map_err(|e| match e {
            crate::guard::BreakerError::UnknownScope(_) => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_scope",
                e.to_string(),
            ),
            other => unavailable(other),
        })?;
    info!(caller = %caller.name, %peer, scopes = ?was_open, "breaker reset");
    let scopes = breaker.status().await.map_err(unavailable)?;
    Ok(Json(BreakerReset { was_open, scopes }).into_response())
}

/// `GET /v1/policy/shadow` (viewer): both digests, counts per kind of disagreement and the latest
/// disagreements of the `[policy] shadow_dir` bundle; 404 when no shadow is configured.
pub(super) async fn shadow_report(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&s)?;
    let Some(shadow) = &pipeline.decider.shadow else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "no_shadow",
            "no shadow bundle: set [policy] shadow_dir to evaluate a candidate beside the live one"
                .into(),
        ));
    };
    let live = pipeline.decider.policies.digest();
    Ok(Json(shadow.report(&live)).into_response())
}
