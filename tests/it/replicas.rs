//! Replicas, proven: three `deprovd` processes in one consumer group on a six-partition topic,
//! sharing one Redis ledger, SIGKILLed and restarted at random while alerts flow and the Okta
//! target throttles (429 + `Retry-After`) and fails 5 % of requests (503). Every targeted account
//! is contained exactly once, no alert is lost, actions a killed replica was running are finished by
//! another after their lease, every partition's offsets are committed to the end, and the audit
//! trail the three wrote is one chain that verifies.
//!
//! `DEPROVD_REPLICAS_ALERTS` sets the alert count of the ignored long run (docs/performance.md).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deprovd::{ActionFilter, ActionState, Settings};
use rand::{Rng, SeedableRng};

use crate::kit::fake::Fake;
use crate::kit::kafka::{brokers, create_partitioned_topics, progress};
use crate::kit::vendors::flaky::Flaky;
use crate::kit::vendors::okta::{Okta, OktaUser};
use crate::kit::{DISABLE_ALL_POLICY, alert_json, eventually, policy_dir, unique, until_ok};
use crate::scim_server::free_port;

const PARTITIONS: i32 = 6;
const REPLICAS: usize = 3;
const TOKEN: &str = "00TESTssws-replicas";

/// One `deprovd run` of the group; SIGKILLed on drop.
struct Replica {
    child: Child,
}

impl Replica {
    /// Start replica `n` on `config` (a fresh API port each time) and wait until it answers.
    async fn start(dir: &Path, n: usize, config: &str) -> Replica {
        let port = free_port();
        let path = dir.join(format!("replica-{n}.toml"));
        let data = dir.join(format!("data-{n}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            &path,
            format!(
                "data_dir = \"{}\"\n{config}\n[api]\nlisten = \"127.0.0.1:{port}\"\n",
                data.display()
            ),
        )
        .unwrap();
        // Each run's log, appended (a restart adds to its predecessor's): printed when the test fails.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("replica-{n}.log")))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_deprovd"))
            .args(["run", "--config"])
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("DEPROVD_REPLICA_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start deprovd");
        // The first line (the dev token) means the config was taken; then wait for /healthz.
        let stdout = child.stdout.take().unwrap();
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).ok();
        })
        .await
        .unwrap();
        let healthz = format!("http://127.0.0.1:{port}/healthz");
        until_ok(&healthz, "replica answers /healthz").await;
        Replica { child }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no cleanup, no final commit
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What one run observed, for the ignored long run to print.
struct Report {
    alerts: usize,
    users: usize,
    kills: usize,
    resumed: usize,
    throttled: usize,
    failed: usize,
    records: u64,
    /// Clean restarts the test made because the broker stranded a partition (see `run`).
    regroups: usize,
    elapsed: Duration,
}

/// `alerts` alerts over `users` Okta users through three replicas, `kills` of them SIGKILLed (one
/// at a time, restarted a moment later) while the alerts flow.
async fn run(alerts: usize, users: usize, kills: usize) -> Report {
    let started = Instant::now();
    let mut world = Okta::default();
    for i in 0..users {
        let login = format!("user{i}@replicas.example");
        world.users.insert(
            format!("00u{i}"),
            OktaUser {
                id: format!("00u{i}"),
                login: login.clone(),
                email: login,
                status: "ACTIVE".into(),
            },
        );
    }
    // 5 % throttled, 5 % failed; every answer takes 40 ms, so calls are in flight when a replica dies.
    let fake =
        Fake::start_with_static_auth(Flaky::new(world, 50, 50, 7), format!("SSWS {TOKEN}")).await;
    fake.with(|i| i.delay = Duration::from_millis(40));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("okta-token"), TOKEN).unwrap();
    let policies = policy_dir(&[("p.rego", DISABLE_ALL_POLICY)]);
    let (topic, group, prefix) = (unique("replicas"), unique("deprovd"), unique("replicas"));
    let prefix = format!("{prefix}:");
    create_partitioned_topics(&[&topic], PARTITIONS).await;
    create_partitioned_topics(&[&format!("{topic}.dlq")], 1).await;
    let config = format!(
        r#"[state]
backend = "redis"
[state.redis]
key_prefix = "{prefix}"
[policy]
dir = "{policies}"
watch = false
[kafka]
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
properties = {{ "fetch.wait.max.ms" = "5", "auto.commit.interval.ms" = "200", "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}
[executor]
poll_interval = "200ms"
claim_ttl = "3s"
[executor.retry]
base_delay = "100ms"
max_delay = "2s"
max_attempts = 30
max_retry_after = "2s"
[guards.breaker]
enabled = false
[connectors.okta]
type = "okta"
base_url = "{base}"
auth = {{ scheme = "ssws", token = "file:{token}" }}
vars = {{ disable_mode = "suspend" }}
concurrency = 4
"#,
        policies = policies.path().display(),
        brokers = brokers(),
        base = fake.base(),
        token = dir.path().join("okta-token").display(),
    );

    let mut replicas = Vec::new();
    for n in 0..REPLICAS {
        replicas.push(Replica::start(dir.path(), n, &config).await);
    }

    // Produce the alerts at a steady pace, each one a new alert id; users repeat (later alerts for a
    // contained user coalesce or find it done).
    let ids: Vec<String> = (0..alerts).map(|i| format!("replica-alert-{i}")).collect();
    let producer = {
        let (topic, ids) = (topic.clone(), ids.clone());
        tokio::spawn(async move {
            use rdkafka::ClientConfig;
            use rdkafka::producer::{FutureProducer, FutureRecord};
            let p: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("message.timeout.ms", "30000")
                .create()
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for (i, id) in ids.iter().enumerate() {
                if i % 2 == 0 {
                    tick.tick().await;
                }
                let email = format!("user{}@replicas.example", (i * 7919) % users);
                let key = i.to_string();
                p.send(
                    FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&alert_json(id, &email)),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("produce");
            }
        })
    };

    // Chaos: while the alerts flow (and the backlog drains), kill a random replica once lifecycle
    // calls are in flight, restart it a moment later.
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
        let calls_before = fake.with(|i| i.log.len());
        eventually(
            Duration::from_secs(60),
            "the target is being called",
            || async { (fake.with(|i| i.log.len()) > calls_before + 20).then_some(()) },
        )
        .await;
        let n = rng.random_range(0..REPLICAS);
        replicas[n].kill9();
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        replicas[n] = Replica::start(dir.path(), n, &config).await;
    }
    producer.await.unwrap();

    // Everything drains: every user contained, nothing pending, every partition committed to its end.
    let settings = Settings::from_toml(
        &format!("data_dir = \"{}\"\n{config}", dir.path().display()),
        Vec::new(),
    )
    .unwrap();
    let store = settings.state.open().await.unwrap();
    // The broker's part: tansu 0.6's group coordinator sometimes leaves a partition assigned to a
    // member it has already dropped after a SIGKILL (no live replica is given it, and no further
    // rebalance comes; the replicas' "kafka partitions assigned" log lines show the gap). Kafka's
    // coordinator expires such a member after `session.timeout.ms` and rebalances. When the
    // committed offsets stand still for STALL with work left, the test does what an operator
    // would: restarts one replica cleanly (SIGTERM: it leaves the group; the rejoin drops the
    // ghost). Counted and printed, never needed for deprovd's own correctness checks below.
    const STALL: Duration = Duration::from_secs(15);
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut last, mut moved_at, mut regroups) = (Vec::new(), Instant::now(), 0);
    loop {
        let (g, t) = (group.clone(), topic.clone());
        let p = tokio::task::spawn_blocking(move || progress(&g, &t, PARTITIONS))
            .await
            .unwrap();
        let committed = p.iter().all(|(committed, high)| *committed == Some(*high));
        let contained = fake.vendor(|f| f.vendor.users.values().all(|u| u.status == "SUSPENDED"));
        let pending = store.pending_count().await.unwrap_or(u64::MAX);
        if committed && contained && pending == 0 {
            break;
        }
        if p != last {
            (last, moved_at) = (p.clone(), Instant::now());
        } else if !committed && moved_at.elapsed() > STALL {
            let n = regroups % REPLICAS;
            replicas[n].terminate();
            replicas[n] = Replica::start(dir.path(), n, &config).await;
            (regroups, moved_at) = (regroups + 1, Instant::now());
        }
        if Instant::now() > deadline {
            for n in 0..REPLICAS {
                let log = std::fs::read_to_string(dir.path().join(format!("replica-{n}.log")));
                eprintln!("--- replica {n} log ---\n{}", log.unwrap_or_default());
            }
            panic!(
                "not drained within 300 s: contained {contained}, pending {pending}, \
                 (committed, high) per partition {p:?}, {regroups} clean restarts"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Exactly once: one accepted suspend per user, no other state change.
    let (changes, throttled, failed) = fake.vendor(|f| (f.changes.clone(), f.throttled, f.failed));
    for i in 0..users {
        let path = format!("/api/v1/users/00u{i}/lifecycle/suspend");
        assert_eq!(
            changes.get(&path),
            Some(&1),
            "user {i} suspended exactly once"
        );
    }
    assert_eq!(changes.len(), users, "no other change: {changes:?}");

    // Nothing lost: every alert is in the ledger, as an action's cause or linked to one that
    // absorbed it, and every action succeeded.
    for id in &ids {
        let found = store
            .list_actions(&ActionFilter {
                alert_id: Some(id.clone()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(!found.is_empty(), "alert {id} is in the ledger");
    }
    let all = store
        .list_actions(&ActionFilter {
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        all.iter().all(|a| a.state == ActionState::Succeeded),
        "every action succeeded: {:?}",
        all.iter()
            .filter(|a| a.state != ActionState::Succeeded)
            .map(|a| (&a.subject, a.state, &a.last_error))
            .collect::<Vec<_>>()
    );

    // One chain across the replicas, verified end to end; and the attempts a killed replica left
    // unrecorded (its lease ran out) were finished by another: an action whose ledger attempts
    // exceed the attempts the trail recorded for it.
    let records = deprovd::cli::audit_check(store.as_ref(), None)
        .await
        .unwrap()
        .expect("the audit trail verifies");
    let trail = store.audit_range(1, 0).await.unwrap();
    let mut recorded: std::collections::HashMap<&str, u32> = Default::default();
    for r in trail.iter().filter(|r| r.kind.as_str() == "action_state") {
        if let Some(k) = r.action_key.as_deref() {
            *recorded.entry(k).or_default() += 1;
        }
    }
    let resumed = all
        .iter()
        .filter(|a| a.attempts > recorded.get(a.key.as_str()).copied().unwrap_or(0))
        .count();
    if kills > 0 {
        assert!(
            resumed > 0,
            "some action a killed replica was running was finished by another"
        );
    }

    for r in &mut replicas {
        r.terminate();
    }
    crate::kit::drop_redis_prefix(&prefix).await;
    Report {
        alerts,
        users,
        kills,
        resumed,
        throttled,
        failed,
        records,
        regroups,
        elapsed: started.elapsed(),
    }
}

#[tokio::test]
async fn three_replicas_killed_at_random_contain_every_account_exactly_once() {
    let r = run(1000, 300, 3).await;
    assert!(r.throttled > 0 && r.failed > 0, "the target misbehaved");
}

/// The long run (docs/performance.md): `cargo test --test it replicas -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "long: 10,000 alerts, about two minutes"]
async fn ten_thousand_alerts_through_three_replicas_killed_at_random() {
    let alerts = std::env::var("DEPROVD_REPLICAS_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let r = run(alerts, 2000, 8).await;
    println!(
        "replicas: {} alerts over {} users, {} kills: all contained exactly once in {:.1}s; {} actions resumed after a lease, {} requests throttled, {} failed; {} audit records verified; {} clean restarts for stranded partitions",
        r.alerts,
        r.users,
        r.kills,
        r.elapsed.as_secs_f64(),
        r.resumed,
        r.throttled,
        r.failed,
        r.records,
        r.regroups
    );
}
