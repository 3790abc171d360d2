//! `[state.redis] durability = "aof"` under fire: a Redis of the test's own with `appendfsync always`
//! is SIGKILLed at random moments during a Kafka stream and restarted from its AOF. Whatever deprovd
//! acknowledged (a committed Kafka offset) must be in the ledger after every restart, and every
//! action must take effect exactly once at the target.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use deprovd::{
    ActionFilter, ActionState, ActionStore, RedisConfig, RedisDurability as Durability, RedisStore,
    StoreBackend as Backend,
};
use rand::Rng;
use serde_json::json;

use crate::kit::connector::webhook;
use crate::kit::kafka::{committed, create_topics, producer, send, source};
use crate::kit::redis::RedisProc;
use crate::kit::{
    DISABLE_ALL_POLICY, Reply, Target, TestApp, alert_json, eventually, policy_dir, unique,
};

/// Alerts in the stream, one subject each.
const ALERTS: usize = 300;
/// Redis SIGKILLs at least.
const KILLS: usize = 10;

/// Every alert below `offset` (alert `i` is at offset `i`) has its action in the ledger.
async fn all_recorded_below(store: &RedisStore, run: &str, offset: i64) -> Vec<String> {
    let mut missing = Vec::new();
    for i in 0..offset {
        let id = format!("{run}-{i}");
        let found = store
            .list_actions(&ActionFilter {
                alert_id: Some(id.clone()),
                limit: 1,
                ..Default::default()
            })
            .await
            .expect("read the ledger");
        if found.is_empty() {
            missing.push(id);
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_during_a_kafka_stream_keeps_every_committed_alert_and_acts_once() {
    let data = tempfile::tempdir().unwrap();
    let redis = tokio::task::spawn_blocking({
        let dir = data.path().join("redis");
        move || RedisProc::start(&dir, &["--appendonly", "yes", "--appendfsync", "always"])
    })
    .await
    .unwrap();
    let target = Target::start().await;
    target.always("POST", "/good", Reply::status(204));
    let (topic, group, run) = (unique("alerts"), unique("deprovd"), unique("crash"));
    create_topics(&[&topic, &format!("{topic}.dlq")]).await;
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let prefix = format!("{}:", unique("deprovd-crash"));
    let redis_config = RedisConfig {
        durability: Durability::Aof,
        ..RedisConfig::single(&redis.url(), &prefix)
    };
    let app = TestApp::builder()
        .data_dir(&data.path().join("app"))
        .policies(policies.path())
        .fast_executor()
        .max_attempts(50)
        .kafka(source(
            &[&topic],
            &group,
            json!({"fetch.wait.max.ms": "5", "auto.commit.interval.ms": "100"}),
        ))
        .connector("good", webhook("good", &target.url()))
        .with(|s| {
            s.state.backend = Backend::Redis;
            s.state.redis = redis_config.clone();
            // 300 distinct subjects in a minute is the point here, not a blast radius.
            s.guards.breaker.enabled = false;
            // An action whose success record a kill swallowed is run again after its lease.
            s.executor.claim_ttl = Duration::from_secs(3);
        })
        .spawn()
        .await;
    app.wait_ready(Duration::from_secs(30)).await;

    // The stream: one alert every ~15 ms.
    let producing = tokio::spawn({
        let (topic, run) = (topic.clone(), run.clone());
        async move {
            let p = producer();
            for i in 0..ALERTS {
                let alert = alert_json(&format!("{run}-{i}"), &format!("{run}-{i}@corp.example"));
                send(&p, &topic, alert.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
    });

    // Meanwhile: SIGKILL Redis at random moments and restart it from its AOF; after each restart,
    // every alert whose offset was committed before the kill must already be in the ledger.
    let mut redis = redis;
    let mut kills = 0usize;
    let mut checked = 0i64;
    while kills < KILLS || !producing.is_finished() {
        let pause = rand::rng().random_range(100..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let before = committed(&group, &topic).unwrap_or(0);
        redis = tokio::task::spawn_blocking(move || {
            redis.kill9();
            redis.restart();
            redis
        })
        .await
        .unwrap();
        kills += 1;
        let store = RedisStore::connect(&redis.url(), &prefix).await.unwrap();
        let missing = all_recorded_below(&store, &run, before).await;
        assert!(
            missing.is_empty(),
            "kill {kills}: committed before the kill (offset {before}) but not in the ledger: {missing:?}"
        );
        checked += before;
    }
    producing.await.unwrap();

    // Everything is consumed and committed, and every action has run.
    eventually(
        Duration::from_secs(120),
        "every offset committed",
        || async { (committed(&group, &topic) == Some(ALERTS as i64)).then_some(()) },
    )
    .await;
    let store = RedisStore::connect(&redis.url(), &prefix).await.unwrap();
    let missing = all_recorded_below(&store, &run, ALERTS as i64).await;
    assert!(
        missing.is_empty(),
        "committed but not in the ledger: {missing:?}"
    );
    eventually(
        Duration::from_secs(120),
        "every action succeeded",
        || async {
            let done = store
                .list_actions(&ActionFilter {
                    state: Some(ActionState::Succeeded),
                    limit: 0,
                    ..Default::default()
                })
                .await
                .ok()?;
            (done.len() == ALERTS).then_some(())
        },
    )
    .await;
    app.stop().await;

    // Exactly once at the target: one idempotency key per subject (a receiver that de-duplicates on
    // it, as the webhook spec asks, acts once); repeated deliveries of that key are counted.
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut calls = 0usize;
    for seen in target.seen() {
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        let subject = body["subject"].as_str().unwrap().to_string();
        let key = seen.headers["idempotency-key"]
            .to_str()
            .unwrap()
            .to_string();
        keys.entry(subject).or_default().insert(key);
        calls += 1;
    }
    assert_eq!(keys.len(), ALERTS, "every subject was acted on");
    let twice: Vec<_> = keys.iter().filter(|(_, k)| k.len() != 1).collect();
    assert!(
        twice.is_empty(),
        "subjects acted on under two keys: {twice:?}"
    );
    println!(
        "redis crash test: {kills} SIGKILLs, {ALERTS} alerts, {checked} committed offsets checked \
         after restarts + {ALERTS} at the end, {calls} target calls for {} actions ({} redeliveries \
         of an idempotency key, 0 second effects)",
        keys.len(),
        calls - keys.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aof_mode_stays_not_ready_on_a_redis_without_fsync_always_until_it_is_fixed() {
    let data = tempfile::tempdir().unwrap();
    let redis = tokio::task::spawn_blocking({
        let dir = data.path().join("redis");
        move || RedisProc::start(&dir, &["--appendonly", "no"])
    })
    .await
    .unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let redis_config = RedisConfig {
        durability: Durability::Aof,
        ..RedisConfig::single(&redis.url(), &format!("{}:", unique("deprovd-aof")))
    };
    let app = TestApp::builder()
        .data_dir(&data.path().join("app"))
        .policies(policies.path())
        .with(|s| {
            s.state.backend = Backend::Redis;
            s.state.redis = redis_config;
        })
        .spawn()
        .await;
    // Refused: never ready, HTTP ingest refuses (nothing could be acknowledged durably).
    let (status, _) = app
        .post_alert(&alert_json(&unique("a"), "ann@corp.example"))
        .await;
    assert_eq!(status, 503);
    assert!(!app.ready().await);

    // Fixed on the Redis side at runtime: deprovd notices on its next attempt, no restart.
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for (k, v) in [("appendonly", "yes"), ("appendfsync", "always")] {
        let _: () = ::redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    app.wait_ready(Duration::from_secs(30)).await;
    app.stop().await;
}
