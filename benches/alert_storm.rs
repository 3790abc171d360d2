//! Alert storm: `DEPROVD_STORM_ALERTS` (default 200,000) alerts produced as fast as the broker
//! takes them, through deprovd (release binary, Redis ledger, the blast-radius breaker on) to a
//! local webhook target. Half the alerts are one noisy detection firing again and again for a
//! handful of users; the other half a flood, each alert a different user.
//!
//! `cargo bench --bench alert_storm` with a Kafka-protocol broker on `DEPROVD_TEST_KAFKA` (default
//! 127.0.0.1:9092) and Redis on 127.0.0.1:6379. Prints, and checks:
//!
//! - **memory**: deprovd's peak RSS (`VmHWM` from `/proc/<pid>/status`), target ≤ 150 MB;
//! - **lag**: `deprovd_kafka_consumer_lag` scraped every second (0 before the storm), its peak, and
//!   that it drains back to 0;
//! - **coalescing**: connector calls per (subject, operation) — at most one each;
//! - **the breaker**: it opens, and the flood's actions wait for approval instead of calling the
//!   target (calls stay near the threshold).
//!
//! `DEPROVD_BENCH_BIN` runs another deprovd binary under the same storm.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use common::{base_config, cpu_time, env_or, free_port, rss_kib, start_deprovd};

/// Connector calls by (subject, operation).
type Calls = Arc<Mutex<HashMap<(String, String), u32>>>;

async fn receive(State(calls): State<Calls>, body: Bytes) -> StatusCode {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let key = (
        v["subject"].as_str().unwrap_or_default().to_string(),
        v["operation"].as_str().unwrap_or_default().to_string(),
    );
    *calls.lock().unwrap().entry(key).or_default() += 1;
    StatusCode::NO_CONTENT
}

/// One series' value from deprovd's `/metrics`.
async fn metric(http: &reqwest::Client, port: u16, series: &str) -> Option<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The storm's alert `i`: even ones the noisy detection for one of five users, odd ones the
/// flood, each a new user.
fn alert(i: u64, run_id: &str) -> String {
    let (title, user) = if i % 2 == 0 {
        ("noisy detection", format!("noisy{}@storm.example", i % 5))
    } else {
        ("flood", format!("flood{i}@storm.example"))
    };
    serde_json::json!({
        "id": format!("storm-{run_id}-{i}"), "source": {"vendor": "bench"},
        "time": chrono::Utc::now().to_rfc3339(),
        "severity": "high", "category": "credential_theft", "title": title,
        "subjects": [{"email": user}],
        "labels": {"run": run_id, "padding": "x".repeat(600)},
    })
    .to_string()
}

#[tokio::main]
async fn main() {
    let total = env_or("DEPROVD_STORM_ALERTS", 200_000);
    let threshold = env_or("DEPROVD_STORM_BREAKER", 100);
    let brokers = std::env::var("DEPROVD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("storm-{run_id}");

    let calls: Calls = Arc::default();
    let app = Router::new().fallback(receive).with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/p.rego"),
        "package deprovd\nimport rego.v1\ndecisions contains {\"action\": \"disable_account\", \"subject\": s.email, \"reason\": input.alert.title, \"rule\": \"storm\"} if {\n  input.alert.severity == \"high\"\n  some s in input.alert.subjects\n}\n",
    )
    .unwrap();
    let port = free_port();
    let prefix = format!("deprovd-storm-{run_id}:");
    let base = base_config(
        dir.path(),
        port,
        Some(&prefix),
        &dir.path().join("policies"),
    );
    let config = format!(
        r#"{base}[kafka]
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "storm-{run_id}"
properties = {{ "fetch.wait.max.ms" = "5" }}
[executor]
poll_interval = "1s"
[guards.breaker]
threshold = {threshold}
window = "10m"
[connectors.sink]
type = "webhook"
base_url = "http://{target}"
auth = {{ scheme = "none" }}
# A webhook offers only `notify` unless told: this one stands in for a real target.
operations = ["notify", "disable_account", "enable_account", "revoke_sessions", "revoke_tokens", "reset_credentials", "contain_host", "lift_containment"]
concurrency = 64
"#
    );
    std::fs::write(dir.path().join("deprovd.toml"), config).unwrap();
    {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        let created = admin
            .create_topics(
                &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("broker reachable (start tansu: see scripts/test.sh)");
        assert!(
            created.iter().all(|r| r.is_ok()),
            "create topic: {created:?}"
        );
    }
    let (child, _) = start_deprovd(&dir.path().join("deprovd.toml"), port).await;
    let pid = child.id();
    let http = reqwest::Client::new();
    let lag_at_start = metric(&http, port, "deprovd_kafka_consumer_lag").await;

    // Sample the lag (and the alerts taken) every second while the storm is produced and drained.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let samples: Arc<Mutex<Vec<(f64, f64)>>> = Arc::default();
    let sampler = {
        let (http, samples, sampling) = (http.clone(), samples.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let lag = metric(&http, port, "deprovd_kafka_consumer_lag")
                    .await
                    .unwrap_or(-1.0);
                let taken = metric(
                    &http,
                    port,
                    "deprovd_alerts_total{outcome=\"accepted\",source=\"generic\"}",
                )
                .await
                .unwrap_or(0.0);
                samples.lock().unwrap().push((lag, taken));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let started = Instant::now();
    let cpu_start = cpu_time(pid).unwrap_or_default();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    let mut i = 0u64;
    while i < total {
        let chunk: Vec<_> = (i..(i + 2000).min(total))
            .map(|n| {
                let p = producer.clone();
                let (t, body) = (topic.clone(), alert(n, &run_id));
                tokio::spawn(async move {
                    p.send(
                        FutureRecord::<(), str>::to(&t).payload(&body),
                        Duration::from_secs(120),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
                })
            })
            .collect();
        for c in chunk {
            c.await.unwrap().expect("produce");
        }
        i = (i + 2000).min(total);
    }
    let produced_secs = started.elapsed().as_secs_f64();

    // Drained: every alert taken and the lag back at 0.
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut drained = false;
    while Instant::now() < deadline {
        let taken = metric(
            &http,
            port,
            "deprovd_alerts_total{outcome=\"accepted\",source=\"generic\"}",
        )
        .await
        .unwrap_or(0.0);
        let lag = metric(&http, port, "deprovd_kafka_consumer_lag")
            .await
            .unwrap_or(-1.0);
        if taken >= total as f64 && lag == 0.0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained_secs = started.elapsed().as_secs_f64();
    // Let the executor finish what is runnable before counting calls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;
    let hwm = rss_kib(pid, "VmHWM:").unwrap_or(0);
    let cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu_start);
    let breaker = metric(&http, port, "deprovd_breaker_open{scope=\"global\"}").await;
    common::stop(child);
    common::drop_redis_prefix(&prefix).await;

    let calls = calls.lock().unwrap().clone();
    let repeated = calls.values().filter(|&&n| n > 1).count();
    let noisy_calls: u32 = calls
        .iter()
        .filter(|((s, _), _)| s.starts_with("noisy"))
        .map(|(_, n)| n)
        .sum();
    let flood_calls: u32 = calls
        .iter()
        .filter(|((s, _), _)| s.starts_with("flood"))
        .map(|(_, n)| n)
        .sum();
    let samples = samples.lock().unwrap().clone();
    let peak_lag = samples.iter().map(|s| s.0).fold(0.0, f64::max);
    println!(
        "alert_storm: {total} alerts produced in {produced_secs:.1}s; drained: {drained} after {drained_secs:.1}s ({:.0} alerts/s)",
        total as f64 / drained_secs.max(1e-9)
    );
    println!(
        "  deprovd peak RSS (VmHWM): {} MiB (target ≤ 150 MB); CPU {:.1} s ({:.0} ms per 1,000 alerts)",
        hwm / 1024,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / total as f64
    );
    println!(
        "  consumer lag: {lag_at_start:?} at start, peak {peak_lag:.0}, last {:?}; per second: {:?}",
        samples.last().map(|s| s.0),
        samples.iter().map(|s| s.0 as i64).collect::<Vec<_>>()
    );
    println!(
        "  connector calls: {} distinct (subject, operation), {repeated} called more than once; noisy detection (5 users): {noisy_calls} calls; flood: {flood_calls} calls",
        calls.len()
    );
    println!("  breaker (threshold {threshold}): open = {breaker:?}");
    assert_eq!(lag_at_start, Some(0.0), "the lag gauge starts at zero");
    assert!(drained, "the storm drained");
    assert_eq!(repeated, 0, "one call per (subject, connector, operation)");
    assert_eq!(breaker, Some(1.0), "the breaker opened");
    assert!(
        flood_calls as u64 <= threshold,
        "the breaker held the flood: {flood_calls} calls"
    );
}
