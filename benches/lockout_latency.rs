//! Manual lockout latency: `POST /v1/lockouts` → the first connector request arriving at the target
//! (issue target: within 50 ms), and the API's own answer time.
//!
//! `cargo bench --bench lockout_latency`. Runs the release binary on its embedded ledger (the default,
//! single-node shape) or, with `DEPROVD_BENCH_STATE=redis`, on Redis at 127.0.0.1:6379 (the production
//! shape). `DEPROVD_BENCH_LOCKOUTS` (default 300) lockouts are sent one after another, each for a distinct
//! subject, so every one is a real connector call (no coalescing, no idempotency replay).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

use common::{env_or, free_port, start_deprovd, summary};

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// The connector target: notes when each subject's first request arrived.
async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(subject) = v["subject"].as_str() {
        arrivals
            .lock()
            .unwrap()
            .entry(subject.to_string())
            .or_insert(now);
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let n = env_or("DEPROVD_BENCH_LOCKOUTS", 300);
    let redis = std::env::var("DEPROVD_BENCH_STATE").is_ok_and(|v| v == "redis");
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    let arrivals: Arrivals = Arc::default();
    let app = Router::new().fallback(receive).with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    // No automatic decisions: only the responders' lockouts act.
    std::fs::write(
        dir.path().join("policies/p.rego"),
        "package deprovd\nimport rego.v1\ndecisions contains d if {\n  input.never\n  d := {}\n}\n",
    )
    .unwrap();
    let port = free_port();
    let prefix = redis.then(|| format!("deprovd-bench-{run_id}:"));
    let base = common::base_config(
        dir.path(),
        port,
        prefix.as_deref(),
        &dir.path().join("policies"),
    );
    let config = format!(
        r#"{base}[guards.breaker]
enabled = false
[connectors.sink]
type = "webhook"
base_url = "http://{target}"
auth = {{ scheme = "none" }}
# A webhook offers only `notify` unless told: this one stands in for a real target.
operations = ["notify", "disable_account", "enable_account", "revoke_sessions", "revoke_tokens", "reset_credentials", "contain_host", "lift_containment"]
"#
    );
    std::fs::write(dir.path().join("deprovd.toml"), config).unwrap();
    let (child, first) = start_deprovd(&dir.path().join("deprovd.toml"), port).await;
    let token = first
        .trim()
        .rsplit(' ')
        .next()
        .expect("dev admin token on the first line")
        .to_string();

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/lockouts");
    let mut to_request = Vec::with_capacity(n as usize);
    let mut to_answer = Vec::with_capacity(n as usize);
    for i in 0..n {
        let subject = format!("user{i}-{run_id}@bench.example");
        let body = serde_json::json!({
            "subject": subject, "reason": "bench", "operations": ["disable_account"],
        });
        let t0 = Instant::now();
        let resp = http
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("lockout request");
        to_answer.push(t0.elapsed());
        assert_eq!(resp.status().as_u16(), 202, "lockout accepted");
        // Wait (bounded) for the connector request, so lockouts do not queue behind each other.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(at) = arrivals.lock().unwrap().get(&subject) {
                to_request.push(at.duration_since(t0));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no connector request for {subject}"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    common::stop(child);
    if let Some(prefix) = &prefix {
        common::drop_redis_prefix(prefix).await;
    }

    println!(
        "lockout_latency: {n} lockouts, one after another, {} ledger",
        if redis { "Redis" } else { "embedded" }
    );
    println!(
        "  POST /v1/lockouts → first connector request: {}",
        summary(&mut to_request)
    );
    println!(
        "  POST /v1/lockouts → 202 answer:               {}",
        summary(&mut to_answer)
    );
}
