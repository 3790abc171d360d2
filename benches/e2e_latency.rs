//! End-to-end latency and memory: Kafka produce → deprovd (release binary, Redis ledger) → the
//! connector's HTTP request arriving at a local server.
//!
//! `cargo bench --bench e2e_latency` with a Kafka-protocol broker on `DEPROVD_TEST_KAFKA`
//! (default 127.0.0.1:9092; scripts/test.sh starts tansu) and Redis on 127.0.0.1:6379.
//! `DEPROVD_BENCH_RATE` (alerts/s, default 2000) and `DEPROVD_BENCH_SECONDS` (default 60) set the load.
//! Every alert names a distinct user, so every alert is one real connector call (no coalescing).
//! Prints latency percentiles, achieved throughput, the backlog over time, deprovd's peak RSS and
//! **deprovd's CPU time per 1,000 alerts** (utime + stime of the deprovd process from
//! `/proc/<pid>/stat`, from the first alert produced to the last one delivered; the broker, Redis and
//! this load generator are other processes and not counted).
//!
//! Before the load, a short probe (`DEPROVD_BENCH_PROBE_SECONDS`, default 5; 0 skips it) produces at
//! the same rate to a second topic that only a plain consumer with deprovd's fetch settings reads:
//! its produce → consume latency is what the broker alone adds (tansu answers a fetch only when
//! `fetch.wait.max.ms` expires), to set beside deprovd's end-to-end figures.
//! `DEPROVD_BENCH_BIN` runs another deprovd binary (e.g. a saved build of `main`) under the same load.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use common::{cpu_time, env_or, free_port, percentile, rss_kib, start_deprovd, summary};

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

/// The fetch wait deprovd (and the probe consumer) use.
const FETCH_WAIT_MS: &str = "5";

async fn create_topic(brokers: &str, topic: &str) {
    // Create the topic before the consumer subscribes (the test broker does not auto-create).
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("broker reachable (start tansu: see scripts/test.sh)");
    assert!(
        created.iter().all(|r| r.is_ok()),
        "create topic: {created:?}"
    );
}

/// The broker alone: produce `rate`/s for `seconds` to a fresh topic and time each message to a
/// plain consumer with deprovd's fetch settings. Returns the latency summary.
async fn broker_probe(brokers: &str, rate: u64, seconds: u64, run_id: &str) -> String {
    let topic = format!("bench-probe-{run_id}");
    create_topic(brokers, &topic).await;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-probe-{run_id}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let total = rate * seconds;
    let base = Instant::now();
    let reader = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(seconds + 30);
        while (lat.len() as u64) < total && Instant::now() < deadline {
            let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
            else {
                continue;
            };
            if let Some(Ok(sent)) = m.payload_view::<str>()
                && let Ok(us) = sent.parse::<u64>()
            {
                lat.push(base.elapsed().saturating_sub(Duration::from_micros(us)));
            }
        }
        lat
    });
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut sent = 0u64;
    let mut pending = Vec::new();
    while sent < total {
        interval.tick().await;
        for _ in 0..per_tick {
            let at = base.elapsed().as_micros().to_string();
            let (p, t) = (producer.clone(), topic.clone());
            pending.push(tokio::spawn(async move {
                let _ = p
                    .send(
                        FutureRecord::<(), str>::to(&t).payload(&at),
                        Duration::from_secs(30),
                    )
                    .await;
            }));
            sent += 1;
        }
    }
    for p in pending {
        let _ = p.await;
    }
    let mut lat = reader.await.unwrap();
    format!("{} of {total} received; {}", lat.len(), summary(&mut lat))
}

#[tokio::main]
async fn main() {
    let rate = env_or("DEPROVD_BENCH_RATE", 2000);
    let seconds = env_or("DEPROVD_BENCH_SECONDS", 60);
    let probe_seconds = env_or("DEPROVD_BENCH_PROBE_SECONDS", 5);
    let brokers = std::env::var("DEPROVD_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("bench-alerts-{run_id}");
    let probe = if probe_seconds > 0 {
        Some(broker_probe(&brokers, rate, probe_seconds, &run_id).await)
    } else {
        None
    };

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
    let base = common::base_config(
        dir.path(),
        port,
        Some(&format!("deprovd-bench-{run_id}:")),
        &dir.path().join("policies"),
    );
    let config = format!(
        r#"{base}[kafka]
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "bench-{run_id}"
properties = {{ "fetch.wait.max.ms" = "{FETCH_WAIT_MS}" }}
[executor]
poll_interval = "1s"
[guards.breaker]
enabled = false
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
    create_topic(&brokers, &topic).await;
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
    let cpu_start = cpu_time(pid).unwrap_or_default();
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
    let drained_secs = started.elapsed().as_secs_f64();
    let cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu_start);
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
    let received = lat.len() as f64;
    println!(
        "  sustained: {:.0} alerts/s delivered ({} in {drained_secs:.1}s from the first produce to the last delivery)",
        received / drained_secs.max(1e-9),
        lat.len()
    );
    println!(
        "  deprovd CPU: {:.0} ms per 1,000 alerts ({:.2} s in all, {:.0} % of one core over the run)",
        cpu.as_secs_f64() * 1e3 / received.max(1.0) * 1e3,
        cpu.as_secs_f64(),
        cpu.as_secs_f64() / drained_secs.max(1e-9) * 100.0
    );
    if let Some(probe) = probe {
        println!(
            "  the broker alone (probe topic, fetch.wait.max.ms = {FETCH_WAIT_MS}, {probe_seconds}s at {rate}/s): {probe}"
        );
    }
    println!(
        "  deprovd RSS: idle {} MiB, peak sampled {} MiB, VmHWM {} MiB",
        rss_idle / 1024,
        rss_peak / 1024,
        hwm / 1024
    );
}
