//! Ingest: `POST /v1/alerts` (alerts and Okta event-hook deliveries), Okta's hook verification,
//! Shared Signals push (`POST /v1/ssf/{receiver}`), and the transmitter's public metadata.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::wire::{AlertAnswer, AlertQuery, DeliveryAccepted, OktaVerification, SetError};
use super::{ApiError, ApiState, Caller};
use crate::pipeline::PipelineError;

/// An authentication or role refusal in RFC 8935's shape (`{"err", "description"}`): the caller of
/// `POST /v1/ssf/{receiver}` is a SET transmitter, not an API client.
pub(super) fn set_auth_error(e: ApiError) -> Response {
    let err = if e.0 == StatusCode::FORBIDDEN {
        "access_denied"
    } else {
        "authentication_failed"
    };
    let mut r = (
        e.0,
        Json(SetError {
            err: err.into(),
            description: e.2,
        }),
    )
        .into_response();
    r.extensions_mut().insert(super::error::ErrorCode(e.1));
    r
}

pub(super) async fn post_alert(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    Query(q): Query<AlertQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let Some(pipeline) = s.readiness.pipeline.get() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "deprovd is starting: the state store is not reachable yet".into(),
        ));
    };
    // The body has arrived: this is the request's time of receipt.
    let received_at = chrono::Utc::now();
    let delivery = pipeline
        .process_delivery(
            &body,
            q.format.as_deref(),
            "http",
            caller.actor(peer),
            received_at,
        )
        .await;
    let dead_letter = |payload: Vec<u8>, reason: String, at: Option<String>| {
        let s = s.clone();
        let caller = caller.name.clone();
        async move {
            if let Some(dlq) = s.dead_letters.get() {
                let peer = peer.to_string();
                let mut origin = vec![
                    ("deprovd-origin", "http"),
                    ("deprovd-caller", caller.as_str()),
                    ("deprovd-peer", peer.as_str()),
                ];
                if let Some(at) = at.as_deref() {
                    origin.push(("deprovd-origin-part", at));
                }
                if let Err(e) = dlq.send(&payload, &reason, &origin).await {
                    tracing::warn!(error = %e, "could not dead-letter a rejected alert");
                }
            }
        }
    };
    match delivery {
        Ok(d) if !d.split => {
            let processed = d.alerts.into_iter().next().expect("one document, accepted");
            info!(alert_id = %processed.alert_id, caller = %caller.name, %peer, actions = processed.actions.len(), "alert accepted");
            Ok((StatusCode::ACCEPTED, Json(AlertAnswer::One(processed))).into_response())
        }
        Ok(d) => {
            // An envelope (Okta event hook): every event is its own alert; a bad one is
            // dead-lettered alone. Only when none could be taken is the delivery refused.
            for r in &d.rejected {
                info!(caller = %caller.name, %peer, at = %r.at, reason = %r.reason, "event rejected");
                dead_letter(r.payload.clone(), r.reason.clone(), Some(r.at.clone())).await;
            }
            info!(caller = %caller.name, %peer, alerts = d.alerts.len(), rejected = d.rejected.len(), "delivery accepted");
            if d.alerts.is_empty() {
                let code = d.rejected.first().map_or("invalid", |r| r.code);
                let reason = d
                    .rejected
                    .iter()
                    .map(|r| r.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ApiError(StatusCode::BAD_REQUEST, code, reason));
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(AlertAnswer::Many(DeliveryAccepted {
                    alerts: d.alerts,
                    rejected: d.rejected,
                })),
            )
                .into_response())
        }
        Err(PipelineError::Rejected { reason, code }) => {
            info!(caller = %caller.name, %peer, reason = %reason, "alert rejected");
            dead_letter(body.to_vec(), reason.clone(), None).await;
            // Over a count limit: 413 says "smaller, please", not "malformed".
            let status = if code == "too_large" {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(ApiError(status, code, reason))
        }
        Err(e @ PipelineError::Unavailable(_)) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
    }
}

/// Okta's one-time event hook verification: `GET` with `X-Okta-Verification-Challenge`, answered
/// with `{"verification": <the header's value>}`. Okta sends the hook's configured authorization
/// header with it, so the caller must hold the `ingest` role like every delivery.
pub(super) async fn okta_verification(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(challenge) = headers
        .get("x-okta-verification-challenge")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 256)
    else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "GET /v1/alerts answers only Okta's event hook verification (header \
             X-Okta-Verification-Challenge); post alerts instead"
                .into(),
        ));
    };
    info!(caller = %caller.name, %peer, "okta event hook verified");
    Ok(Json(OktaVerification {
        verification: challenge.to_string(),
    })
    .into_response())
}

/// `POST /v1/ssf/{receiver}`: one pushed SET (RFC 8935). Answers in RFC 8935's shape
/// (`{"err", "description"}`), not the API's `{code, message}`: the caller is a SET transmitter.
/// Not audited as an API call: the alert's own `alert_received` record names the caller, as for
/// `POST /v1/alerts`.
pub(super) async fn post_ssf_set(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    Path(receiver): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let set_error = |status: StatusCode, err: &str, description: String| {
        (
            status,
            Json(SetError {
                err: err.into(),
                description,
            }),
        )
            .into_response()
    };
    if !s.ssf_receivers.has(&receiver) {
        return set_error(
            StatusCode::NOT_FOUND,
            "invalid_request",
            format!("no Shared Signals receiver named `{receiver}` is configured"),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(crate::ssf::SET_CONTENT_TYPE)
    {
        return set_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "Content-Type must be {}, not `{content_type}`",
                crate::ssf::SET_CONTENT_TYPE
            ),
        );
    }
    let (Some(pipeline), Some(store)) = (s.readiness.pipeline.get(), s.store.get()) else {
        return set_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "deprovd is starting: the state store is not reachable yet".into(),
        );
    };
    let token = String::from_utf8_lossy(&body);
    let sinks = crate::ingest::ssf::Sinks {
        pipeline,
        store: store.as_ref(),
        dead_letters: s.dead_letters.get(),
    };
    let outcome = s
        .ssf_receivers
        .handle(&receiver, &token, "push", caller.actor(peer), &sinks)
        .await;
    match crate::ingest::ssf::push_response(&outcome) {
        (status, None) => status.into_response(),
        (status, Some(body)) => (status, Json(body)).into_response(),
    }
}

/// `GET /v1/ssf/jwks`: the transmitter's public signing key (unauthenticated, like any JWKS).
pub(super) async fn ssf_jwks(State(s): State<Arc<ApiState>>) -> Response {
    match &s.ssf_transmitter {
        Some(t) => Json(t.jwks()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /.well-known/ssf-configuration`: SSF 1.0 transmitter metadata (unauthenticated).
pub(super) async fn ssf_configuration(State(s): State<Arc<ApiState>>) -> Response {
    match &s.ssf_transmitter {
        Some(t) => Json(t.metadata()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
