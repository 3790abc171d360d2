//! End-to-end latency and memory: Kafka produce → deprovd (release binary, Redis ledger) → the
//! connector's HTTP request arriving at a local server.
//!
//! `cargo bench --bench e2e_latency` with a Kafka-protocol broker on `DEPROVD_TEST_KAFKA`
//! (default 127.0.0.1:9092; scripts/test.sh starts tansu) and Redis on 127.0.0.1:6379.
//! `DEPROVD_BENCH_RATE` (alerts/s, default 2000) and `DEPROVD_BENCH_SECONDS` (default 60) set the load.
//! Every alert names a distinct user, so every alert is one real connector call (no coalescing).
//! Prints latency percentiles, achieved throughput, the backlog over time, and deprovd's peak RSS.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use common::{env_or, free_port, percentile, rss_kib, start_deprovd};

type Sent = Arc<Mutex<HashMap<String, Instant>>>;
type Latencies = Arc<Mutex<Vec<Duration>>>;

async fn receive(State((sent, lat)): State<(Sent, Latencies)>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(id) = v["context"]["alert_id"].as_str()
        && let Some(t0) = sent.lock().unwrap().remove(id)
    {
        lat.lock().unwrap().push(now - t0);
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let rate = env_or("DEPROVD_BENCH_RATE", 2000);
    let seconds = env_or("DEPROVD_BENCH_SECONDS", 60);
    let brokers = std::env::var("DEPROVD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("bench-alerts-{run_id}");

    // The connector target.
    let sent: Sent = Arc::default();
    let latencies: Latencies = Arc::default();
    let app = Router::new()
        .fallback(receive)
        .with_state((sent.clone(), latencies.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // deprovd, release build, configured for this run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/p.rego"),
        "package deprovd\nimport rego.v1\ndecisions contains {\"action\": \"disable_account\", \"subject\": s.email, \"reason\": input.alert.title, \"rule\": \"bench\"} if {\n  input.alert.severity == \"high\"\n  some s in input.alert.subjects\n}\n",
    )
    .unwrap();
    let port = free_port();
    let config = format!(
        r#"data_dir = "{d}"
[api]
listen = "127.0.0.1:{port}"
[state]
backend = "redis"
[state.redis]
key_prefix = "deprovd-bench-{run_id}:"
[policy]
dir = "{d}/policies"
watch = false
[kafka]
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "bench-{run_id}"
properties = {{ "fetch.wait.max.ms" = "5" }}
[executor]
poll_interval = "1s"
[guards.breaker]
enabled = false
[connectors.sink]
type = "webhook"
base_url = "http://{target}"
auth = {{ scheme = "none" }}
concurrency = 64
"#,
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("deprovd.toml"), config).unwrap();
    {
        // Create the topic before the consumer subscribes (the test broker does not auto-create).
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
    let rss_idle = rss_kib(pid, "VmRSS:").unwrap_or(0);

    // Load: `rate` alerts/s for `seconds`, each for a distinct user.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let total = rate * seconds;
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut interval = tokio::time::interval(tick);
    let mut rss_peak = 0u64;
    let mut backlog = Vec::new();
    let started = Instant::now();
    let mut produced = 0u64;
    let mut pending = Vec::new();
    while produced < total {
        interval.tick().await;
        for _ in 0..per_tick {
            let id = format!("bench-{produced}");
            let alert = serde_json::json!({
                "id": id, "source": {"vendor": "bench"}, "time": chrono::Utc::now().to_rfc3339(),
                "severity": "high", "category": "credential_theft", "title": "bench alert",
                "subjects": [{"email": format!("user{produced}@bench.example")}],
                "labels": {"run": run_id, "padding": "x".repeat(900)},
            })
            .to_string();
            sent.lock().unwrap().insert(id, Instant::now());
            let p = producer.clone();
            let t = topic.clone();
            pending.push(tokio::spawn(async move {
                let _ = p
                    .send(
                        FutureRecord::<(), str>::to(&t).payload(&alert),
                        Duration::from_secs(30),
                    )
                    .await;
            }));
            produced += 1;
        }
        if produced % rate == 0 {
            let received = latencies.lock().unwrap().len() as u64;
            backlog.push(produced - received);
            rss_peak = rss_peak.max(rss_kib(pid, "VmRSS:").unwrap_or(0));
        }
    }
    for p in pending {
        let _ = p.await;
    }
    producer.flush(Duration::from_secs(10)).ok();
    let produce_secs = started.elapsed().as_secs_f64();
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    while (latencies.lock().unwrap().len() as u64) < total && Instant::now() < drain_deadline {
        rss_peak = rss_peak.max(rss_kib(pid, "VmRSS:").unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hwm = rss_kib(pid, "VmHWM:").unwrap_or(0);
    common::stop(child);

    common::drop_redis_prefix(&format!("deprovd-bench-{run_id}:")).await;

    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    println!(
        "e2e_latency: {total} alerts at {rate}/s for {seconds}s (produced in {produce_secs:.1}s); received {}",
        lat.len()
    );
    if !lat.is_empty() {
        println!(
            "  latency produce → connector request: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.90).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().unwrap().as_secs_f64() * 1e3,
        );
    }
    println!("  backlog (produced - received) at each second: {backlog:?}");
    println!(
        "  deprovd RSS: idle {} MiB, peak sampled {} MiB, VmHWM {} MiB",
        rss_idle / 1024,
        rss_peak / 1024,
        hwm / 1024
    );
}
