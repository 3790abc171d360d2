//! Lane isolation (issue 16): the fast connector's time from alert to request, alone and beside a
//! throttled target (`429` + `Retry-After` on every request) and a target that hangs until the
//! connector's timeout, printed side by side.
//!
//! `cargo bench --bench lane_isolation` with Redis on 127.0.0.1:6379. Two release `deprovd`
//! processes share the Redis ledger, as replicas do in production: an ingest-only one takes the
//! alerts (`POST /v1/alerts`) and an executor runs them, so every action goes through the ledger's
//! due index and the executor's claims. `DEPROVD_BENCH_ALERTS` (default 500) alerts per run, each
//! one action per configured connector; `DEPROVD_BENCH_BATCH` (default 256) sets `[executor] batch`.

mod common;
#[path = "../tests/it/lanes/load.rs"]
mod load;

use std::time::{Duration, Instant};

use common::{env_or, free_port, start_deprovd};
use load::{FastTarget, hanging_target, latencies, summary, throttled_target};

/// One replica's config: `executor` on or off, the fast connector, and the slow ones if given.
fn config(
    dir: &std::path::Path,
    port: u16,
    prefix: &str,
    executor: bool,
    batch: u64,
    connectors: &str,
) -> String {
    let base = common::base_config(
        dir,
        port,
        Some(prefix),
        &dir.parent().unwrap().join("policies"),
    );
    format!(
        r#"{base}[executor]
enabled = {executor}
poll_interval = "200ms"
batch = {batch}
[guards.breaker]
enabled = false
{connectors}"#
    )
}

fn webhook(name: &str, url: &str, timeout: &str) -> String {
    format!(
        "[connectors.{name}]\ntype = \"webhook\"\nbase_url = \"{url}\"\nauth = {{ scheme = \"none\" }}\ntimeout = \"{timeout}\"\n\
         operations = [\"notify\", \"disable_account\", \"revoke_sessions\"]\n"
    )
}

/// One run; returns the fast connector's sorted latencies and the wall time to deliver them all.
async fn run(alerts: usize, batch: u64, with_slow: bool) -> (Vec<Duration>, Duration) {
    let fast = FastTarget::start().await;
    let throttled = throttled_target().await;
    let (hanging, _hang) = hanging_target().await;
    let mut connectors = webhook("fast", &fast.url(), "5s");
    if with_slow {
        connectors += &webhook("throttled", &format!("http://{throttled}"), "5s");
        connectors += &webhook("hanging", &format!("http://{hanging}"), "2s");
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("policies")).unwrap();
    std::fs::write(
        root.path().join("policies/p.rego"),
        "package deprovd\nimport rego.v1\ndecisions contains {\"action\": \"disable_account\", \"subject\": s.email, \"reason\": input.alert.title, \"rule\": \"bench\"} if {\n  some s in input.alert.subjects\n}\n",
    )
    .unwrap();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("deprovd-bench-{run_id}:");
    let mut replicas = Vec::new();
    let mut api = None;
    for (name, executor) in [("ingest", false), ("executor", true)] {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let port = free_port();
        let file = dir.join("deprovd.toml");
        std::fs::write(
            &file,
            config(&dir, port, &prefix, executor, batch, &connectors),
        )
        .unwrap();
        let (child, first) = start_deprovd(&file, port).await;
        let token = first.trim().rsplit(' ').next().unwrap().to_string();
        api.get_or_insert((format!("http://127.0.0.1:{port}"), token));
        replicas.push(child);
    }
    let (url, token) = api.unwrap();
    let started = Instant::now();
    let alert = |id: &str| {
        serde_json::json!({
            "id": id, "source": {"vendor": "bench"}, "time": chrono::Utc::now().to_rfc3339(),
            "severity": "high", "category": "credential_theft", "title": "bench alert",
            "subjects": [{"email": format!("{id}@bench.example")}],
        })
        .to_string()
    };
    let sent = load::post_alerts(&url, &token, &run_id, alerts, alert).await;
    let lat = latencies(&fast, &sent, Duration::from_secs(600)).await;
    let all = started.elapsed();
    for child in replicas {
        common::stop(child);
    }
    common::drop_redis_prefix(&prefix).await;
    (lat, all)
}

#[tokio::main]
async fn main() {
    let alerts = env_or("DEPROVD_BENCH_ALERTS", 500) as usize;
    let batch = env_or("DEPROVD_BENCH_BATCH", 256);
    let (alone, alone_all) = run(alerts, batch, false).await;
    let (beside, beside_all) = run(alerts, batch, true).await;
    println!(
        "lane_isolation: {alerts} alerts, fast connector alert → request ([executor] batch = {batch})"
    );
    println!(
        "  alone:                      {}  all delivered in {:.1} s",
        summary(&alone),
        alone_all.as_secs_f64()
    );
    println!(
        "  beside throttled + hanging: {}  all delivered in {:.1} s",
        summary(&beside),
        beside_all.as_secs_f64()
    );
}
