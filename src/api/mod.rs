//! The HTTP surface: alert ingest, read-only views of the ledger, health, readiness and metrics.
//!
//! Every `/v1` route needs a bearer token. Tokens are kept only as SHA-256 hashes and compared in
//! constant time against every configured hash (no early exit that would leak which one matched).
//! Errors are JSON `{"code": "...", "message": "..."}` with a stable `code`.
//!
//! Responder routes (`/v1/lockouts`, restores, approve/reject) honour an `Idempotency-Key` header: the first request
//! with a key claims it in the state store with `SET NX` (per caller and route) together with a
//! fingerprint of the body; a repeat with the same body replays the same request id — so the same
//! actions and the same answer, never a second lockout — and a repeat with a different body is 422
//! `idempotency_key_reused`.
//! Every authenticated `/v1` call is an `api_call` record in the audit trail (caller, role, peer
//! address, method, path, query), written *before* the call is served: if the trail cannot be
//! written, the call fails with 503 instead of happening unrecorded. `POST /v1/alerts` is the
//! exception that proves the rule: its caller is recorded on the alert's own `alert_received` record,
//! so ingest stays at one audit round trip per alert.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::info;

use crate::audit::{Actor, AuditDraft, AuditFilter, AuditKind, AuditRecord};
use crate::config::{Problem, SecretRef};
use crate::ledger::{ActionFilter, ActionState, StateStore};
use crate::lockout::{self, LockoutError, LockoutRequest};
use crate::pipeline::{Pipeline, PipelineError};
use crate::telemetry::Metrics;

pub mod serve;

/// Roles, from least to most powerful. `admin` can do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ingest,
    Viewer,
    Responder,
    Approver,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether a holder of `self` may use an endpoint that requires `needed`.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Admin, _) => true,
            (a, b) if a == b => true,
            // Responders and approvers can read what they act on.
            (Role::Responder | Role::Approver, Role::Viewer) => true,
            _ => false,
        }
    }
}

/// `[[api.tokens]]`: one bearer token, given by reference or by its SHA-256 hex hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shows up in logs and, later, the audit trail).
    pub name: String,
    pub role: Role,
    /// `env:NAME` / `file:PATH` of the token itself; hashed at start, then forgotten.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Lower-case hex SHA-256 of the token, for configs that should not reference the token at all.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// `[api]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address. Loopback by default; expose deliberately.
    pub listen: String,
    /// Largest request body accepted (bytes); larger gets 413.
    pub max_body_bytes: usize,
    /// A request's headers must arrive within this of the connection's acceptance (or, on a
    /// kept-alive connection, of the request's first byte); else the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this of its headers; else 408 `body_timeout`.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections served at once; more are accepted and closed at once. Keep it well under the
    /// process's file-descriptor limit (`ulimit -n`), which connectors and the store share.
    pub max_connections: usize,
    pub tokens: Vec<TokenConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8780".into(),
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            tokens: Vec::new(),
        }
    }
}

/// The longest any `[api]` timeout may be: beyond it a stalled client holds a slot for no purpose.
const MAX_API_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most `max_connections` may be (far beyond any file-descriptor limit worth having).
const MAX_CONNECTIONS: usize = 65_536;

impl ApiConfig {
    /// The slow-client limits the server applies.
    pub fn limits(&self) -> serve::ServeLimits {
        serve::ServeLimits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }

    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        for (key, value) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() || value > MAX_API_TIMEOUT {
                problems.push(Problem::new(
                    format!("{path}.{key}"),
                    "must be more than 0s and at most 1h",
                ));
            }
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS {
            problems.push(Problem::new(
                format!("{path}.max_connections"),
                format!("must be 1 to {MAX_CONNECTIONS}"),
            ));
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(Problem::new(
                format!("{path}.listen"),
                format!("`{}` is not an address like 127.0.0.1:8780", self.listen),
            ));
        }
        if self.max_body_bytes < 1024 {
            problems.push(Problem::new(
                format!("{path}.max_body_bytes"),
                "must be at least 1024",
            ));
        }
        // Token names identify people for four eyes (an approver must not be the requester), so
        // two tokens must never name the same person under the comparison approvals use.
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let p = format!("{path}.tokens[{i}]");
            if t.name.trim().is_empty() {
                problems.push(Problem::new(format!("{p}.name"), "must not be empty"));
            } else {
                match seen.entry(crate::identity::normalize_token_name(&t.name)) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        problems.push(Problem::new(
                            format!("{p}.name"),
                            format!(
                                "`{}` is the same name as {path}.tokens[{}] (names are compared \
                                 trimmed and case-insensitively); give each token holder a \
                                 distinct name, or one person could approve their own action",
                                t.name,
                                first.get()
                            ),
                        ))
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(i);
                    }
                }
            }
            match (&t.token, &t.sha256) {
                (None, None) | (Some(_), Some(_)) => problems.push(Problem::new(
                    &p,
                    "set exactly one of `token` (a reference) or `sha256`",
                )),
                (None, Some(h)) if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) => {
                    problems.push(Problem::new(
                        format!("{p}.sha256"),
                        "must be 64 hex characters",
                    ))
                }
                _ => {}
            }
        }
    }
}

/// A verified identity.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Hashes of every accepted token.
pub struct TokenStore {
    entries: Vec<([u8; 32], Caller)>,
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenStore {
    /// Resolve references and hash them. Errors name the token entry, never the value.
    pub fn from_config(tokens: &[TokenConfig]) -> Result<Self, String> {
        use secrecy::ExposeSecret;
        let mut entries = Vec::new();
        for t in tokens {
            let hash = match (&t.token, &t.sha256) {
                (Some(r), _) => hash_token(
                    r.resolve()
                        .map_err(|e| format!("api token `{}`: {e}", t.name))?
                        .expose_secret(),
                ),
                (None, Some(h)) => {
                    let bytes = hex::decode(h)
                        .map_err(|e| format!("api token `{}`: sha256: {e}", t.name))?;
                    bytes
                        .try_into()
                        .map_err(|_| format!("api token `{}`: sha256 must be 32 bytes", t.name))?
                }
                (None, None) => {
                    return Err(format!(
                        "api token `{}` has neither token nor sha256",
                        t.name
                    ));
                }
            };
            entries.push((
                hash,
                Caller {
                    name: t.name.clone(),
                    role: t.role,
                },
            ));
        }
        Ok(Self { entries })
    }

    pub fn add(&mut self, token: &str, name: &str, role: Role) {
        self.entries.push((
            hash_token(token),
            Caller {
                name: name.into(),
                role,
            },
        ));
    }

    /// Constant-time lookup over all entries.
    pub fn verify(&self, presented: &str) -> Option<Caller> {
        let h = hash_token(presented);
        let mut found: Option<&Caller> = None;
        for (stored, caller) in &self.entries {
            if bool::from(stored.ct_eq(&h)) && found.is_none() {
                found = Some(caller);
            }
        }
        found.cloned()
    }
}

/// What `/readyz` reports. Components flip their flag as they connect and disconnect.
#[derive(Default)]
pub struct Readiness {
    pub store: AtomicBool,
    pub policies: AtomicBool,
    /// `None` when Kafka is not configured.
    pub kafka: std::sync::OnceLock<Arc<AtomicBool>>,
    /// Set once the pipeline is built (after the store first answers).
    pub pipeline: std::sync::OnceLock<Arc<Pipeline>>,
}

impl Readiness {
    fn report(&self) -> (bool, serde_json::Value) {
        let store = self.store.load(Ordering::Relaxed);
        let policies = self.policies.load(Ordering::Relaxed);
        let kafka = self.kafka.get().map(|k| k.load(Ordering::Relaxed));
        let ready = store && policies && kafka.unwrap_or(true) && self.pipeline.get().is_some();
        (
            ready,
            serde_json::json!({"ready": ready, "store": store, "policies": policies, "kafka": kafka}),
        )
    }
}

/// Shared state of the router.
pub struct ApiState {
    pub tokens: TokenStore,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub store: std::sync::OnceLock<Arc<dyn StateStore>>,
    /// Where rejected HTTP alerts go (with the reason), so a sender that ignores the 400 loses nothing.
    pub dead_letters: std::sync::OnceLock<Arc<dyn crate::deadletter::DeadLetterSink>>,
    /// Shared Signals receivers (`POST /v1/ssf/{receiver}`); empty when none are configured.
    pub ssf_receivers: Arc<crate::ingest::ssf::Receivers>,
    /// deprovd's Shared Signals transmitter (metadata and JWKS routes), when configured.
    pub ssf_transmitter: Option<Arc<crate::ssf::transmit::Transmitter>>,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    code: &'static str,
    message: String,
}

/// An error response with a stable `code`.
pub struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.0,
            Json(ErrorBody {
                code: self.1,
                message: self.2,
            }),
        )
            .into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

fn authorize(state: &ApiState, headers: &HeaderMap, needed: Role) -> Result<Caller, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing bearer token".into(),
            )
        })?;
    let caller = state.tokens.verify(presented).ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "invalid bearer token".into(),
        )
    })?;
    if !caller.role.allows(needed) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "role `{:?}` may not do this; needs `{:?}`",
                caller.role, needed
            )
            .to_lowercase(),
        ));
    }
    Ok(caller)
}

impl Caller {
    /// The caller as named in the audit trail.
    pub fn actor(&self, peer: SocketAddr) -> Actor {
        Actor {
            name: self.name.clone(),
            role: Some(self.role.as_str().to_string()),
            source: Some(peer.to_string()),
        }
    }
}

/// Record an API call in the audit trail before serving it; 503 if the trail cannot be written.
async fn audit_call(
    s: &ApiState,
    caller: &Caller,
    peer: SocketAddr,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Result<(), ApiError> {
    let mut d = AuditDraft::new(
        AuditKind::ApiCall,
        caller.actor(peer),
        serde_json::json!({ "method": method, "path": path, "query": query }),
    );
    if let Some(key) = path.strip_prefix("/v1/actions/") {
        d.action_key = Some(key.to_string());
    }
    store_of(s)?
        .append_audit(vec![d])
        .await
        .map(|_| ())
        .map_err(|e| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot write the audit trail, so the call was not served: {e}"),
            )
        })
}

pub fn router(state: Arc<ApiState>, max_body: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/alerts", post(post_alert).get(okta_verification))
        .route("/v1/actions", get(list_actions))
        .route("/v1/actions/{key}", get(get_action))
        .route("/v1/actions/{key}/restore", post(restore_action))
        .route("/v1/lockouts", post(post_lockout))
        .route("/v1/lockouts/{id}", get(get_lockout))
        .route("/v1/lockouts/{id}/restore", post(restore_lockout))
        .route("/v1/audit", get(list_audit))
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/reject", post(reject))
        .route("/v1/breaker", get(breaker_status))
        .route("/v1/breaker/reset", post(breaker_reset))
        .route("/v1/ssf/{receiver}", post(post_ssf_set))
        .route("/v1/ssf/jwks", get(ssf_jwks))
        .route("/.well-known/ssf-configuration", get(ssf_configuration))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    let (ready, body) = s.readiness.report();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct AlertQuery {
    /// Alert format; `auto` (default) detects it.
    format: Option<String>,
}

async fn post_alert(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<AlertQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Ingest)?;
    let Some(pipeline) = s.readiness.pipeline.get() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "deprovd is starting: the state store is not reachable yet".into(),
        ));
    };
    let delivery = pipeline
        .process_delivery(&body, q.format.as_deref(), "http", caller.actor(peer))
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
            Ok((StatusCode::ACCEPTED, Json(processed)).into_response())
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
                Json(serde_json::json!({"alerts": d.alerts, "rejected": d.rejected})),
            )
                .into_response())
        }
        Err(PipelineError::Rejected { reason, code }) => {
            info!(caller = %caller.name, %peer, reason = %reason, "alert rejected");
            dead_letter(body.to_vec(), reason.clone(), None).await;
            Err(ApiError(StatusCode::BAD_REQUEST, code, reason))
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
async fn okta_verification(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Ingest)?;
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
    Ok(Json(serde_json::json!({ "verification": challenge })).into_response())
}

/// `POST /v1/ssf/{receiver}`: one pushed SET (RFC 8935). Answers in RFC 8935's shape
/// (`{"err", "description"}`), not the API's `{code, message}`: the caller is a SET transmitter.
/// Not audited as an API call: the alert's own `alert_received` record names the caller, as for
/// `POST /v1/alerts`.
async fn post_ssf_set(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(receiver): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let set_error = |status: StatusCode, err: &str, description: String| {
        (
            status,
            Json(serde_json::json!({ "err": err, "description": description })),
        )
            .into_response()
    };
    let caller = match authorize(&s, &headers, Role::Ingest) {
        Ok(c) => c,
        Err(ApiError(status, _, message)) => {
            let err = if status == StatusCode::FORBIDDEN {
                "access_denied"
            } else {
                "authentication_failed"
            };
            return set_error(status, err, message);
        }
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
async fn ssf_jwks(State(s): State<Arc<ApiState>>) -> Response {
    match &s.ssf_transmitter {
        Some(t) => Json(t.jwks()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /.well-known/ssf-configuration`: SSF 1.0 transmitter metadata (unauthenticated).
async fn ssf_configuration(State(s): State<Arc<ApiState>>) -> Response {
    match &s.ssf_transmitter {
        Some(t) => Json(t.metadata()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ActionsQuery {
    subject: Option<String>,
    state: Option<ActionState>,
    alert_id: Option<String>,
    limit: Option<usize>,
}

fn store_of(s: &ApiState) -> Result<&Arc<dyn StateStore>, ApiError> {
    s.store.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "state store not reachable yet".into(),
        )
    })
}

async fn list_actions(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<ActionsQuery>,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Viewer)?;
    audit_call(&s, &caller, peer, "GET", uri.path(), uri.query()).await?;
    let filter = ActionFilter {
        subject: q.subject.map(|s| crate::plan::normalize_subject(&s)),
        state: q.state,
        alert_id: q.alert_id,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let actions = store_of(&s)?.list_actions(&filter).await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(serde_json::json!({ "actions": actions })).into_response())
}

async fn get_action(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Viewer)?;
    audit_call(&s, &caller, peer, "GET", uri.path(), uri.query()).await?;
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

fn pipeline_of(s: &ApiState) -> Result<&Arc<Pipeline>, ApiError> {
    s.readiness.pipeline.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "deprovd is starting: the state store is not reachable yet".into(),
        )
    })
}

impl From<LockoutError> for ApiError {
    fn from(e: LockoutError) -> Self {
        let status = match &e {
            LockoutError::Invalid { .. } | LockoutError::IdempotencyKeyReused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            LockoutError::NotFound(_) => StatusCode::NOT_FOUND,
            LockoutError::NotRestorable(_) => StatusCode::CONFLICT,
            LockoutError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.code(), e.to_string())
    }
}

/// The `Idempotency-Key` header, if sent; an empty, overlong or non-ASCII one is a 400.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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
async fn request_id(
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

async fn post_lockout(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Responder)?;
    let req: LockoutRequest = serde_json::from_slice(&body).map_err(|e| {
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

async fn get_lockout(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers, Role::Viewer)?;
    let status = lockout::status(store_of(&s)?.as_ref(), &id).await?;
    Ok(Json(status).into_response())
}

async fn restore_lockout(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Responder)?;
    let pipeline = pipeline_of(&s)?;
    // Restores are idempotent by construction; the key is still honoured so that reusing one for a
    // different target is refused rather than silently ignored.
    request_id(&s, &headers, &caller, "restore", &format!("lockout:{id}")).await?;
    let restored = lockout::restore_lockout(pipeline, &id, &caller.name).await?;
    info!(lockout_id = %id, caller = %caller.name, %peer, "lockout restore requested");
    Ok((StatusCode::ACCEPTED, Json(restored)).into_response())
}

async fn restore_action(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Responder)?;
    let pipeline = pipeline_of(&s)?;
    request_id(&s, &headers, &caller, "restore", &format!("action:{key}")).await?;
    let restored = lockout::restore_action(pipeline, &key, &caller.name).await?;
    info!(action_key = %key, caller = %caller.name, %peer, "action restore requested");
    Ok((StatusCode::ACCEPTED, Json(restored)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    subject: Option<String>,
    alert_id: Option<String>,
    action_key: Option<String>,
    /// RFC 3339; records at or after.
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339; records at or before.
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Most records returned (default 100, at most 1000).
    limit: Option<usize>,
}

/// Records read per page while walking the trail backwards.
const AUDIT_PAGE: u64 = 256;
/// Most records one `GET /v1/audit` examines: the trail grows without bound and has no secondary
/// indexes, so a filter that matches little must not scan it all. `complete: false` says the scan
/// stopped here; narrow the time range (`until`) to look further back.
const AUDIT_SCAN_CAP: u64 = 20_000;
/// Records are appended in roughly time order (replica clocks and batching blur it a little), so the
/// backwards walk stops this long before `since`.
const AUDIT_CLOCK_SLACK_SECS: i64 = 60;

/// `GET /v1/audit`: matching records, newest first.
async fn list_audit(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Viewer)?;
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{e}; use subject, alert_id, action_key, since/until (RFC 3339) and limit"),
        )
    })?;
    audit_call(&s, &caller, peer, "GET", uri.path(), uri.query()).await?;
    let store = store_of(&s)?;
    let unavailable = |e: crate::ledger::StoreError| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = AuditFilter {
        subject: q.subject.map(|s| crate::plan::normalize_subject(&s)),
        alert_id: q.alert_id,
        action_key: q.action_key,
        since: q.since,
        until: q.until,
    };
    let mut out: Vec<AuditRecord> = Vec::new();
    let mut complete = true;
    let mut end = store
        .audit_head()
        .await
        .map_err(unavailable)?
        .map_or(0, |h| h.seq);
    let mut scanned = 0u64;
    'walk: while end > 0 {
        if scanned >= AUDIT_SCAN_CAP {
            complete = false;
            break;
        }
        let start = end.saturating_sub(AUDIT_PAGE - 1).max(1);
        let page = store
            .audit_range(start, (end - start + 1) as usize)
            .await
            .map_err(unavailable)?;
        for r in page.iter().rev() {
            scanned += 1;
            if filter
                .since
                .is_some_and(|t| r.time < t - chrono::Duration::seconds(AUDIT_CLOCK_SLACK_SECS))
            {
                break 'walk;
            }
            if filter.matches(r) {
                out.push(r.clone());
                if out.len() >= limit {
                    break 'walk;
                }
            }
        }
        end = start - 1;
    }
    Ok(Json(serde_json::json!({ "records": out, "complete": complete })).into_response())
}

impl From<crate::approval::ApprovalError> for ApiError {
    fn from(e: crate::approval::ApprovalError) -> Self {
        use crate::approval::ApprovalError as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::SelfApproval(_) => StatusCode::FORBIDDEN,
            E::Expired(_) | E::NotAwaiting { .. } | E::Busy(_) => StatusCode::CONFLICT,
            E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.code(), e.to_string())
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        e.to_string(),
    )
}

#[derive(Debug, Deserialize)]
struct ApprovalsQuery {
    limit: Option<usize>,
}

/// `GET /v1/approvals`: actions awaiting approval, newest first, each with `requested_by` and
/// `expires_at`.
async fn list_approvals(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<ApprovalsQuery>,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Viewer)?;
    audit_call(&s, &caller, peer, "GET", uri.path(), uri.query()).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let approvals = crate::approval::list(store_of(&s)?.as_ref(), limit)
        .await
        .map_err(unavailable)?;
    Ok(Json(serde_json::json!({ "approvals": approvals })).into_response())
}

/// Optional body of approve / reject.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    comment: Option<String>,
}

/// An optional JSON body: empty means the default.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body must be empty or JSON {shape}: {e}"),
        )
    })
}

async fn decide(
    s: Arc<ApiState>,
    peer: SocketAddr,
    uri: axum::http::Uri,
    headers: HeaderMap,
    key: String,
    body: axum::body::Bytes,
    verdict: crate::approval::Verdict,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Approver)?;
    let b: DecisionBody = optional_body(&body, "{\"comment\": \"...\"}")?;
    let pipeline = pipeline_of(&s)?;
    audit_call(&s, &caller, peer, "POST", uri.path(), uri.query()).await?;
    // `Idempotency-Key`: a client retrying the same decision (a lost answer) gets the action as it
    // is now, not a 409 for a decision it made itself; a different decision under one key is 422.
    if let Some(k) = idempotency_key(&headers)? {
        let fresh = lockout::new_id();
        let fingerprint = format!(
            "{}:{key}:{}",
            verdict.as_str(),
            b.comment.as_deref().unwrap_or("")
        );
        let claimed = lockout::claim_idempotency_key(
            store_of(&s)?.as_ref(),
            &caller.name,
            "approval",
            &k,
            &fingerprint,
            || fresh.clone(),
        )
        .await?;
        if claimed != fresh {
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
            return Ok(Json(rec).into_response());
        }
    }
    let rec = crate::approval::decide(
        &pipeline.approvals,
        &key,
        verdict,
        caller.actor(peer),
        b.comment,
    )
    .await?;
    Ok(Json(rec).into_response())
}

/// `POST /v1/approvals/{id}/approve` (approver or admin, not the requester): the action runs.
async fn approve(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    decide(
        s,
        peer,
        uri,
        headers,
        key,
        body,
        crate::approval::Verdict::Approve,
    )
    .await
}

/// `POST /v1/approvals/{id}/reject` (approver or admin, not the requester): the action is cancelled.
async fn reject(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    decide(
        s,
        peer,
        uri,
        headers,
        key,
        body,
        crate::approval::Verdict::Reject,
    )
    .await
}

/// `GET /v1/breaker`: each scope's state (viewer and up).
async fn breaker_status(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Viewer)?;
    audit_call(&s, &caller, peer, "GET", uri.path(), uri.query()).await?;
    let pipeline = pipeline_of(&s)?;
    let scopes = match &pipeline.approvals.breaker {
        Some(b) => b.status().await.map_err(unavailable)?,
        None => Vec::new(),
    };
    Ok(Json(serde_json::json!({
        "enabled": pipeline.approvals.breaker.is_some(),
        "open": scopes.iter().any(|x| x.open),
        "scopes": scopes,
    }))
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    /// `global` or a connector instance; absent: every scope.
    scope: Option<String>,
}

/// `POST /v1/breaker/reset` (admin only): close the breaker and empty its window; audited.
async fn breaker_reset(
    State(s): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let caller = authorize(&s, &headers, Role::Admin)?;
    let b: ResetBody = optional_body(&body, "{\"scope\": \"global\"}")?;
    let pipeline = pipeline_of(&s)?;
    audit_call(&s, &caller, peer, "POST", uri.path(), uri.query()).await?;
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
    Ok(Json(serde_json::json!({ "was_open": was_open, "scopes": scopes })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_by_hash_only() {
        let mut t = TokenStore::from_config(&[]).unwrap();
        t.add("s3cret-token", "siem", Role::Ingest);
        assert_eq!(t.verify("s3cret-token").unwrap().name, "siem");
        assert!(t.verify("s3cret-tokem").is_none());
        assert!(t.verify("").is_none());
    }

    fn token(name: &str) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            role: Role::Approver,
            token: None,
            sha256: Some("ab".repeat(32)),
        }
    }

    #[test]
    fn token_names_that_differ_only_in_case_or_spaces_are_refused() {
        let api = ApiConfig {
            tokens: vec![
                token("alice"),
                token("bob"),
                token(" Alice "),
                token("ALICE"),
                token("   "),
            ],
            ..ApiConfig::default()
        };
        let mut problems = Vec::new();
        api.validate("api", &mut problems);
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{text:?}");
        assert!(text[0].contains("api.tokens[2].name") && text[0].contains("api.tokens[0]"));
        assert!(text[1].contains("api.tokens[3].name") && text[1].contains("api.tokens[0]"));
        assert!(text[2].contains("api.tokens[4].name") && text[2].contains("must not be empty"));

        let distinct = ApiConfig {
            tokens: vec![token("alice"), token("alice-2"), token("bob")],
            ..ApiConfig::default()
        };
        let mut problems = Vec::new();
        distinct.validate("api", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn slow_client_limits_have_defaults_and_impossible_ones_are_refused() {
        let d = ApiConfig::default();
        assert_eq!(d.header_timeout, Duration::from_secs(10));
        assert_eq!(d.body_timeout, Duration::from_secs(30));
        assert_eq!(d.idle_timeout, Duration::from_secs(60));
        assert_eq!(d.max_connections, 512);
        let mut problems = Vec::new();
        d.validate("api", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");

        let bad = ApiConfig {
            header_timeout: Duration::ZERO,
            body_timeout: Duration::from_secs(7200),
            idle_timeout: Duration::ZERO,
            max_connections: 0,
            ..ApiConfig::default()
        };
        let mut problems = Vec::new();
        bad.validate("api", &mut problems);
        let keys: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for key in [
            "api.header_timeout",
            "api.body_timeout",
            "api.idle_timeout",
            "api.max_connections",
        ] {
            assert!(keys.iter().any(|k| k.contains(key)), "{key}: {keys:?}");
        }
    }

    #[test]
    fn roles_allow_what_they_should() {
        assert!(Role::Admin.allows(Role::Ingest));
        assert!(Role::Responder.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Ingest));
        assert!(!Role::Ingest.allows(Role::Viewer));
    }
}
