//! The audit trail mirrored to Kafka (the real broker): every record arrives, keyed by its `seq`, in
//! order, byte-for-byte the record in the store (so with its hash and chain link); after a restart
//! the mirror resumes from its cursor with neither gaps nor repeats.

use std::time::Duration;

use deprovd::AuditRecord;
use rdkafka::message::Message;

use crate::kit::connector::webhook;
use crate::kit::kafka::{create_topics, partition0_reader, produce, source};
use crate::kit::{
    DISABLE_ALL_POLICY, Reply, Target, TestApp, TestAppBuilder, alert_json, eventually, policy_dir,
    unique,
};

/// The app: a webhook connector `wh` at `target`, alerts from Kafka topic `alerts` read as
/// `group`, the audit trail mirrored to topic `audit`, the ledger in Redis under `prefix`, its data
/// in `data` (kept across a restart).
fn builder(
    data: &std::path::Path,
    policies: &std::path::Path,
    target: &Target,
    prefix: &str,
    (alerts, group): (&str, &str),
    audit: &str,
) -> TestAppBuilder {
    let kafka = source(&[alerts], group, serde_json::json!({}));
    TestApp::builder()
        .data_dir(data)
        .policies(policies)
        .quick_scan()
        .kafka(kafka)
        .with(|s| s.audit.kafka_topic = Some(audit.to_string()))
        .connector("wh", webhook("wh", &target.url()))
        .redis_prefix(prefix)
}

/// Marks the end of what the test reads from the mirror topic.
const SENTINEL: &[u8] = b"end-of-test";

/// Every (key, record) of partition 0 of `topic` before the [`SENTINEL`].
fn mirrored(topic: &str, timeout: Duration) -> Vec<(String, AuditRecord)> {
    let c = partition0_reader(topic);
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no end marker after {} records",
            out.len()
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            if m.payload() == Some(SENTINEL) {
                return out;
            }
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let rec: AuditRecord =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("record JSON");
            out.push((key, rec));
        }
    }
}

/// Wait until `calls` actions have their `succeeded` record in the trail and the mirror's cursor
/// has reached the end of the trail; returns the trail.
async fn settled(prefix: &str, topic: &str, calls: usize) -> Vec<AuditRecord> {
    let store = deprovd::StoreConfig {
        backend: deprovd::StoreBackend::Redis,
        redis: deprovd::RedisConfig::single("redis://127.0.0.1:6379/0", prefix),
        ..Default::default()
    }
    .open()
    .await
    .expect("redis");
    eventually(
        Duration::from_secs(30),
        "actions recorded and trail mirrored",
        || async {
            let trail = store.audit_range(1, 0).await.ok()?;
            let done = trail
                .iter()
                .filter(|r| {
                    r.kind == deprovd::AuditKind::ActionState && r.detail["state"] == "succeeded"
                })
                .count();
            let cursor = deprovd::AuditMirror::cursor(store.as_ref(), topic)
                .await
                .ok()?;
            (done == calls && cursor == trail.len() as u64).then_some(trail)
        },
    )
    .await
}

async fn run_some_alerts(app: &TestApp, n: usize) {
    app.wait_ready(Duration::from_secs(20)).await;
    for _ in 0..n {
        let email = format!("{}@corp.example", unique("m"));
        let (status, _) = app.post_alert(&alert_json(&unique("a"), &email)).await;
        assert_eq!(status, 202);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_reach_kafka_in_order_with_their_hashes_and_resume_after_restart() {
    let (alerts, audit) = (unique("alerts"), unique("audit"));
    create_topics(&[&alerts, &format!("{alerts}.dlq"), &audit]).await;
    let target = Target::start().await;
    target.always("POST", "/wh", Reply::status(200));
    let prefix = format!("{}:", unique("deprovd-mirror"));
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    // One consumer group for both processes, as one deployment restarted.
    let group = unique("deprovd");
    let spawn = || {
        builder(
            data.path(),
            policies.path(),
            &target,
            &prefix,
            (&alerts, &group),
            &audit,
        )
        .spawn()
    };
    let app = spawn().await;
    run_some_alerts(&app, 3).await;
    let first_run = settled(&prefix, &audit, 3).await;
    app.stop().await;

    // Restart: a second process resumes from the stored cursor.
    let app = spawn().await;
    run_some_alerts(&app, 2).await;
    let stored = settled(&prefix, &audit, 5).await;
    app.stop().await;
    assert!(stored.len() > first_run.len());
    assert_eq!(stored[..first_run.len()], first_run[..]);

    // Both processes have stopped: a marker produced now follows everything the mirror wrote, so
    // reading up to it shows every mirrored record, repeats included.
    produce(&audit, SENTINEL).await;
    let got = tokio::task::spawn_blocking({
        let audit = audit.clone();
        move || mirrored(&audit, Duration::from_secs(30))
    })
    .await
    .unwrap();

    let seqs: Vec<u64> = got.iter().map(|(_, r)| r.seq).collect();
    let expected: Vec<u64> = (1..=stored.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "every record once, in order, across the restart"
    );
    for ((key, mirrored), stored) in got.iter().zip(&stored) {
        assert_eq!(key, &mirrored.seq.to_string(), "keyed by seq");
        assert_eq!(mirrored, stored, "the record as stored");
    }
    // Seals and links survive the mirror: the mirrored copy verifies as a chain on its own.
    assert!(deprovd::verify_audit_chain(got.iter().map(|(_, r)| r)).is_ok());
}
