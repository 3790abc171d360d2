//! The HTTP surface: alert ingest, manual lockouts, approvals, read-only views of the ledger and the
//! audit trail, health, readiness and metrics.
//!
//! Layout: [`caller`] (who is calling: bearer tokens, roles, the [`Caller`] extractor), [`audit`]
//! (the route layer that writes the `api_call` record), [`error`] (JSON errors with a stable
//! `code`), [`wire`] (query, body and answer types), [`openapi`] (the OpenAPI 3.1 document, generated
//! from those types and a table of operations), [`serve`] (the accept loop and its slow-client limits),
//! [`tls`] (`[api.tls]`: HTTPS, client certificates, certificate reload without a restart),
//! and one file per resource: [`alerts`] (ingest, Okta verification, Shared Signals), [`actions`],
//! [`lockouts`], [`approvals`], [`breaker`], [`trail`] (`GET /v1/audit`, `GET /v1/audit/verify`).
//!
//! **Who may call what** is decided in one place, [`access`]: every `/v1` route names the role it
//! needs, and the audit layer authenticates and checks it before any handler runs, so a handler
//! cannot forget either. Tokens are kept only as SHA-256 hashes and compared in constant time
//! against every configured hash (no early exit that would leak which one matched).
//!
//! **Every authenticated call is audited** by the same layer — an `api_call` record with caller,
//! role, peer, method, matched route, path, query, status and outcome — after the handler answered,
//! so the record says what happened; refused (403) calls are recorded too. If the record cannot be
//! written, the answer is replaced by 503: nothing is disclosed unrecorded, and what a call changed
//! (a lockout, a decision, a reset) is in the trail already through its own records. Ingest routes
//! (`POST /v1/alerts`, `POST /v1/ssf/{receiver}`) are recorded when refused or failed; an accepted
//! delivery is recorded by each alert's own `alert_received` record (caller, peer), so ingest stays
//! at one audit round trip per alert.
//!
//! **In-process callers**: the responders' console (`crate::console`, a layer above) calls these same
//! routes through this router with a [`Delegated`] caller in the request's extensions instead of a
//! bearer header, so the console gets exactly the API's roles, audit records (marked `"via":
//! "console"`), idempotency and errors. Extensions are never read from the wire, so no network
//! request can carry one.
//!
//! Responder routes (`/v1/lockouts`, restores, approve/reject) honour an `Idempotency-Key` header: the
//! first request with a key claims it in the state store with `SET NX` (per caller and route)
//! together with a fingerprint of the body; a repeat with the same body replays the same request id —
//! so the same actions and the same answer, never a second lockout — and a repeat with a different
//! body is 422 `idempotency_key_reused`. A refusal is never replayed as a success (see
//! [`approvals`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::config::Problem;
use crate::ledger::StateStore;
use crate::pipeline::Pipeline;
use crate::telemetry::Metrics;

mod actions;
mod alerts;
mod approvals;
pub(crate) mod audit;
mod breaker;
pub(crate) mod caller;
pub(crate) mod error;
mod lockouts;
pub(crate) mod openapi;
pub(crate) mod serve;
pub(crate) mod tls;
mod trail;
pub(crate) mod wire;

pub(crate) use caller::{Caller, Delegated, Role, TokenStore};
pub use caller::{TokenConfig, hash_token};
pub(crate) use error::ApiError;
pub use tls::TlsConfig;

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
    /// `[api.tls]`: serve HTTPS (and optionally require client certificates) on `listen`.
    pub tls: Option<TlsConfig>,
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
            tls: None,
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
        if let Some(tls) = &self.tls {
            tls.validate(&format!("{path}.tls"), problems);
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

/// What `/readyz` reports. Components flip their flag as they connect and disconnect.
#[derive(Default)]
pub(crate) struct Readiness {
    pub store: AtomicBool,
    pub policies: AtomicBool,
    /// `None` when Kafka is not configured.
    pub kafka: std::sync::OnceLock<Arc<AtomicBool>>,
    /// Set once the pipeline is built (after the store first answers).
    pub pipeline: std::sync::OnceLock<Arc<Pipeline>>,
}

/// The body of `/readyz` (200 when `ready`, else 503).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "Readiness")]
pub(crate) struct ReadinessReport {
    /// Every component below is up and the pipeline is built.
    pub ready: bool,
    /// The state store answers.
    pub store: bool,
    /// A policy bundle is loaded.
    pub policies: bool,
    /// The Kafka consumer is connected; `null` when Kafka is not configured.
    pub kafka: Option<bool>,
}

impl Readiness {
    pub(crate) fn report(&self) -> (bool, ReadinessReport) {
        let store = self.store.load(Ordering::Relaxed);
        let policies = self.policies.load(Ordering::Relaxed);
        let kafka = self.kafka.get().map(|k| k.load(Ordering::Relaxed));
        let ready = store && policies && kafka.unwrap_or(true) && self.pipeline.get().is_some();
        (
            ready,
            ReadinessReport {
                ready,
                store,
                policies,
                kafka,
            },
        )
    }
}

/// Shared state of the router.
pub(crate) struct ApiState {
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

/// How a route's authenticated calls are audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// Every call is an `api_call` record.
    Always,
    /// Ingest: refused and failed calls are `api_call` records; an accepted delivery is recorded by
    /// each alert's `alert_received` record, which names the caller.
    UnlessAccepted,
}

/// Who may call a route and how its calls are audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub role: Role,
    pub audit: AuditMode,
}

/// The access rule of every authenticated route, by method and matched route; `None`: public
/// (`/healthz`, `/readyz`, `/metrics`, the Shared Signals JWKS and metadata). A route added to the
/// router but not here is public by omission — `every_v1_route_has_an_access_rule` refuses that.
pub fn access(method: &Method, route: &str) -> Option<Access> {
    use AuditMode::*;
    let (role, audit) = match (method.as_str(), route) {
        ("POST", "/v1/alerts") | ("POST", "/v1/ssf/{receiver}") => (Role::Ingest, UnlessAccepted),
        ("GET", "/v1/alerts") => (Role::Ingest, Always),
        ("GET", "/v1/actions" | "/v1/actions/{key}" | "/v1/lockouts/{id}" | "/v1/audit")
        | ("GET", "/v1/audit/verify")
        | ("GET", "/v1/lockouts")
        | ("GET", "/v1/approvals" | "/v1/breaker" | "/v1/policy/shadow") => (Role::Viewer, Always),
        (
            "POST",
            "/v1/actions/{key}/restore"
            | "/v1/actions/{key}/retry"
            | "/v1/lockouts"
            | "/v1/lockouts/{id}/restore",
        ) => (Role::Responder, Always),
        ("POST", "/v1/approvals/{id}/approve" | "/v1/approvals/{id}/reject") => {
            (Role::Approver, Always)
        }
        ("POST", "/v1/breaker/reset") => (Role::Admin, Always),
        _ => return None,
    };
    Some(Access { role, audit })
}

/// Every route as (method, route); the table-driven tests walk it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/alerts"),
    ("GET", "/v1/alerts"),
    ("GET", "/v1/actions"),
    ("GET", "/v1/actions/{key}"),
    ("POST", "/v1/actions/{key}/restore"),
    ("POST", "/v1/actions/{key}/retry"),
    ("GET", "/v1/lockouts"),
    ("POST", "/v1/lockouts"),
    ("GET", "/v1/lockouts/{id}"),
    ("POST", "/v1/lockouts/{id}/restore"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/verify"),
    ("GET", "/v1/approvals"),
    ("POST", "/v1/approvals/{id}/approve"),
    ("POST", "/v1/approvals/{id}/reject"),
    ("GET", "/v1/breaker"),
    ("POST", "/v1/breaker/reset"),
    ("GET", "/v1/policy/shadow"),
    ("POST", "/v1/ssf/{receiver}"),
    ("GET", "/v1/ssf/jwks"),
    ("GET", "/.well-known/ssf-configuration"),
    ("GET", "/v1/openapi.json"),
];

/// The HTTP series to export at zero from the start, as (route, method, statuses): every route
/// with the statuses its OpenAPI operation documents, plus `500` (any handler can fail, and that is
/// the series to alert on), and `unmatched` with `404` for GET and POST. Bounded by the route table.
pub(crate) fn known_http_series() -> Vec<(&'static str, &'static str, Vec<String>)> {
    let doc = openapi::document();
    let mut out: Vec<_> = ROUTES
        .iter()
        .map(|&(method, route)| {
            let mut statuses: Vec<String> =
                doc["paths"][route][method.to_ascii_lowercase()]["responses"]
                    .as_object()
                    .into_iter()
                    .flat_map(|r| r.keys())
                    .filter(|code| code.parse::<u16>().is_ok())
                    .cloned()
                    .collect();
            statuses.push("500".to_string());
            statuses.sort();
            statuses.dedup();
            (route, method, statuses)
        })
        .collect();
    for method in ["GET", "POST"] {
        out.push(("unmatched", method, vec!["404".to_string()]));
    }
    out
}

pub(crate) use openapi::OPENAPI;

pub(crate) fn router(state: Arc<ApiState>, max_body: usize) -> Router {
    Router::new()
        .route(
            "/v1/alerts",
            post(alerts::post_alert).get(alerts::okta_verification),
        )
        .route("/v1/actions", get(actions::list_actions))
        .route("/v1/actions/{key}", get(actions::get_action))
        .route("/v1/actions/{key}/restore", post(actions::restore_action))
        .route("/v1/actions/{key}/retry", post(actions::retry_action))
        .route(
            "/v1/lockouts",
            post(lockouts::post_lockout).get(lockouts::list_lockouts),
        )
        .route("/v1/lockouts/{id}", get(lockouts::get_lockout))
        .route("/v1/lockouts/{id}/restore", post(lockouts::restore_lockout))
        .route("/v1/audit", get(trail::list_audit))
        .route("/v1/audit/verify", get(trail::verify_audit))
        .route("/v1/approvals", get(approvals::list_approvals))
        .route(
            "/v1/approvals/{id}/approve",
            post(approvals::verdict::<approvals::Approve>),
        )
        .route(
            "/v1/approvals/{id}/reject",
            post(approvals::verdict::<approvals::Reject>),
        )
        .route("/v1/breaker", get(breaker::breaker_status))
        .route("/v1/breaker/reset", post(breaker::breaker_reset))
        .route("/v1/policy/shadow", get(breaker::shadow_report))
        .route("/v1/ssf/{receiver}", post(alerts::post_ssf_set))
        .route("/v1/ssf/jwks", get(alerts::ssf_jwks))
        .route(
            "/.well-known/ssf-configuration",
            get(alerts::ssf_configuration),
        )
        // Only on matched routes, where the route's access rule is known.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::layer,
        ))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/v1/openapi.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    OPENAPI.as_str(),
                )
            }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Every request, matched or not, counted by its route template.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_request,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// `deprovd_http_requests_total` and `deprovd_http_request_duration_seconds` for one request,
/// labelled by the matched route's template (`unmatched` for a path no route has).
async fn count_request(
    State(s): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = crate::telemetry::HttpMethod::of(req.method().as_str());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    s.metrics.http_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
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

pub(crate) fn store_of(s: &ApiState) -> Result<&Arc<dyn StateStore>, ApiError> {
    s.store.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "state store not reachable yet".into(),
        )
    })
}

pub(crate) fn pipeline_of(s: &ApiState) -> Result<&Arc<Pipeline>, ApiError> {
    s.readiness.pipeline.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "deprovd is starting: the state store is not reachable yet".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v1_route_has_an_access_rule() {
        for (method, route) in ROUTES {
            let public = matches!(
                *route,
                "/healthz"
                    | "/readyz"
                    | "/metrics"
                    | "/v1/ssf/jwks"
                    | "/.well-known/ssf-configuration"
                    | "/v1/openapi.json"
            );
            let rule = access(&method.parse().unwrap(), route);
            assert_eq!(rule.is_none(), public, "{method} {route}: {rule:?}");
        }
    }

    #[test]
    fn every_route_has_http_series_with_its_documented_statuses() {
        let known = known_http_series();
        assert_eq!(known.len(), ROUTES.len() + 2);
        for (method, route) in ROUTES {
            let (_, _, statuses) = known
                .iter()
                .find(|(r, m, _)| r == route && m == method)
                .unwrap_or_else(|| panic!("{method} {route}"));
            assert!(statuses.iter().any(|s| s == "500"), "{method} {route}");
            assert!(
                statuses.iter().any(|s| s.starts_with('2')),
                "{method} {route}: its success status is documented: {statuses:?}"
            );
        }
        let alerts = known
            .iter()
            .find(|(r, m, _)| *r == "/v1/alerts" && *m == "POST")
            .unwrap();
        assert_eq!(alerts.2, ["202", "400", "401", "403", "500"]);
    }

    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else_is() {
        let doc: serde_json::Value = serde_json::from_str(&OPENAPI).expect("OpenAPI is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = 0;
        for (path, ops) in paths {
            for method in ops.as_object().expect("operations").keys() {
                documented += 1;
                let m = method.to_ascii_uppercase();
                assert!(
                    ROUTES.iter().any(|(rm, rp)| *rm == m && rp == path),
                    "{m} {path} is documented but not routed"
                );
            }
        }
        for (method, route) in ROUTES {
            let op = &doc["paths"][route][method.to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{method} {route} is routed but not documented"
            );
            // Public routes say so; the others need the bearer token.
            let public = access(&method.parse().unwrap(), route).is_none();
            assert_eq!(
                op["security"] == serde_json::json!([]),
                public,
                "{method} {route}: security does not match the access table"
            );
        }
        assert_eq!(documented, ROUTES.len());
    }

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
