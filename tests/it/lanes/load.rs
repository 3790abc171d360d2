//! The lane-isolation load, shared by the integration test (`tests/it/lanes`) and the bench
//! (`benches/lane_isolation.rs`): three targets — one fast, one throttled (every request answered
//! `429` with `Retry-After`), one that accepts connections and never answers (the connector's
//! timeout ends each call) — and a burst of alerts whose time from `POST /v1/alerts` to the fast
//! target's request is measured per alert.
//!
//! Nothing here knows how deprovd was started: callers pass the API's base URL and token.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Arrival time of the fast target's first request per alert id (or lockout request id).
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// The fast target: answers every request at once and records when the first request for each
/// alert (`context.alert_id`) or lockout (`context.request_id`) arrived.
pub(crate) struct FastTarget {
    pub(crate) addr: SocketAddr,
    arrivals: Arrivals,
}

async fn fast(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let ctx = &v["context"];
    // `context` is rendered into the webhook body as JSON text by the spec's template.
    let ctx: serde_json::Value = match ctx {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
        other => other.clone(),
    };
    let id = ctx["alert_id"].as_str().or(ctx["request_id"].as_str());
    if let Some(id) = id {
        arrivals
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert(now);
    }
    StatusCode::NO_CONTENT
}

impl FastTarget {
    pub(crate) async fn start() -> FastTarget {
        let arrivals = Arrivals::default();
        let app = Router::new().fallback(fast).with_state(arrivals.clone());
        let addr = serve(app).await;
        FastTarget { addr, arrivals }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// When the first request for `id` arrived, if it has.
    pub(crate) fn arrival(&self, id: &str) -> Option<Instant> {
        self.arrivals.lock().unwrap().get(id).copied()
    }
}

/// A target whose rate budget is always spent: `429` with `Retry-After: 1` and Okta-style
/// rate-limit headers (nothing left until a reset one second away).
pub(crate) async fn throttled_target() -> SocketAddr {
    async fn throttled() -> Response {
        let reset = (chrono::Utc::now().timestamp() + 1).to_string();
        (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", "1".to_string()),
                ("x-rate-limit-remaining", "0".to_string()),
                ("x-rate-limit-reset", reset),
            ],
            "slow down",
        )
            .into_response()
    }
    serve(Router::new().fallback(throttled)).await
}

/// A target that accepts every connection and never answers: each call ends at the connector's
/// timeout. The connections are held until the returned guard is dropped.
pub(crate) async fn hanging_target() -> (SocketAddr, HangGuard) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, HangGuard(task))
}

/// Stops the hanging target (and drops its connections) when dropped.
pub(crate) struct HangGuard(tokio::task::JoinHandle<()>);

impl Drop for HangGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Every operation `connectors/webhook.yaml` defines. A webhook offers only `notify` unless its
/// `operations` lists more; the tests' webhooks stand in for real targets, so they list them all.
pub(crate) const WEBHOOK_OPERATIONS: [&str; 8] = [
    "notify",
    "disable_account",
    "enable_account",
    "revoke_sessions",
    "revoke_tokens",
    "reset_credentials",
    "contain_host",
    "lift_containment",
];

/// A `webhook` connector instance (TOML/JSON fields) posting to `url` with a `timeout`.
pub(crate) fn webhook_fields(url: &str, timeout: Duration) -> serde_json::Value {
    serde_json::json!({
        "type": "webhook",
        "base_url": url,
        "auth": {"scheme": "none"},
        "timeout": format!("{}ms", timeout.as_millis()),
        "operations": WEBHOOK_OPERATIONS,
    })
}

/// A burst of `n` alerts (`alert(id)` is the document) posted back to back to `api` (base URL)
/// with `token`; returns each alert id with the instant just before its POST.
pub(crate) async fn post_alerts(
    api: &str,
    token: &str,
    run: &str,
    n: usize,
    alert: impl Fn(&str) -> String,
) -> Vec<(String, Instant)> {
    let http = reqwest::Client::new();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{run}-{i}");
        let t0 = Instant::now();
        let r = http
            .post(format!("{api}/v1/alerts"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(alert(&id))
            .send()
            .await
            .expect("post alert");
        assert!(r.status().is_success(), "alert refused: {}", r.status());
        sent.push((id, t0));
    }
    sent
}

/// Wait (polling, with a deadline) until the fast target saw every alert of `sent`, then return
/// each alert's time from POST to the fast target's request, sorted.
pub(crate) async fn latencies(
    fast: &FastTarget,
    sent: &[(String, Instant)],
    deadline: Duration,
) -> Vec<Duration> {
    let until = Instant::now() + deadline;
    loop {
        let missing = sent
            .iter()
            .filter(|(id, _)| fast.arrival(id).is_none())
            .count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{missing} of {} alerts never reached the fast target within {deadline:?}",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut out: Vec<Duration> = sent
        .iter()
        .map(|(id, t0)| fast.arrival(id).expect("arrived") - *t0)
        .collect();
    out.sort();
    out
}

/// The `q` quantile (0..=1) of sorted `lat`.
pub(crate) fn quantile(lat: &[Duration], q: f64) -> Duration {
    if lat.is_empty() {
        return Duration::ZERO;
    }
    let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
    lat[i.min(lat.len() - 1)]
}

/// `p50 … ms, p99 … ms, max … ms`.
pub(crate) fn summary(lat: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms",
        ms(quantile(lat, 0.50)),
        ms(quantile(lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    )
}
