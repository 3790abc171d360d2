//! `/v1/actions`: the ledger (viewer) and restoring one action (responder).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::lockouts::request_id;
use super::wire::{ActionList, ActionsQuery};
use super::{ApiError, ApiState, Caller, pipeline_of, store_of};
use crate::ledger::ActionFilter;
use crate::lockout;

pub(super) async fn list_actions(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
    q: Result<Query<ActionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(super::error::bad_query)?;
    let filter = ActionFilter {
        subject: q.subject.map(|s| crate::plan::normalize_subject(&s)),
        state: q.state,
        alert_id: q.alert_id,
        connector: q.connector,
        since: q.since,
        key_prefix: q.key_prefix.map(|p| p.to_ascii_lowercase()),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        ..ActionFilter::default()
    };
    let actions = store_of(&s)?.list_actions(&filter).await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(ActionList { actions }).into_response())
}

pub(super) async fn get_action(
    State(s): State<Arc<ApiState>>,
    _caller: Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    match store_of(&s)?.get_action(&key).await {
        Ok(Some(a)) => Ok(Json(a).into_response()),
        Ok(None) => Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no action with key `{key}`"),
        )),
        Err(e) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
    }
}

/// `POST /v1/actions/{key}/retry` (responder): plan a failed action again with a fresh budget.
pub(super) async fn retry_action(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&s)?;
    let rec = lockout::retry_action(pipeline, &key, caller.actor(peer)).await?;
    Ok((StatusCode::ACCEPTED, Json(rec)).into_response())
}

pub(super) async fn restore_action(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&s)?;
    request_id(&s, &headers, &caller, "restore", &format!("action:{key}")).await?;
    let restored = lockout::restore_action(pipeline, &key, &caller.name).await?;
    info!(action_key = %key, caller = %caller.name, %peer, "action restore requested");
    Ok((StatusCode::ACCEPTED, Json(restored)).into_response())
}
