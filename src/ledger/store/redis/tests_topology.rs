//! The Redis store beyond one relaxed node, against `redis-server` processes these tests start on
//! free ports ([`super::testkit`]): the whole conformance suite on a 3-primary Cluster, the
//! durability checks and `WAIT`, and a Sentinel failover that loses nothing acknowledged.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::testkit::{Cluster, RedisProc, wait_until};
use super::*;
use crate::ledger::ActionStore;
use crate::ledger::store::conformance::{self, LONG, assert_insert};

fn prefix() -> String {
    format!("deprovd-test-{}:", uuid::Uuid::new_v4().simple())
}

fn cluster_config() -> RedisConfig {
    RedisConfig {
        cluster: Cluster::shared().urls(),
        key_prefix: prefix(),
        ..RedisConfig::default()
    }
}

mod cluster {
    use super::*;

    macro_rules! cluster_conformance_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                // A fresh prefix per case; the cluster is thrown away with the test process.
                let store = RedisStore::open(&cluster_config()).await.unwrap();
                assert!(store.conn.is_cluster());
                conformance::$name(Arc::new(store)).await;
            }
        )*};
    }

    conformance::for_each_case!(cluster_conformance_tests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ledger_key_is_in_one_cluster_slot_on_one_primary() {
    let config = cluster_config();
    let store = RedisStore::open(&config).await.unwrap();
    let a = conformance::record("slot", "sam", Utc::now());
    assert_insert(&store, &a, LONG, Some("x"), Inserted::New).await;
    // Every key the insert wrote lives on the node that owns `{ledger}`; the others hold none.
    let counts: Vec<usize> = Cluster::shared()
        .nodes
        .iter()
        .map(|n| {
            let mut c = n.client();
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg(format!("{}*", config.key_prefix))
                .query(&mut c)
                .unwrap();
            assert!(keys.iter().all(|k| k.contains("{ledger}:")), "{keys:?}");
            keys.len()
        })
        .collect();
    assert_eq!(
        counts.iter().filter(|n| **n > 0).count(),
        1,
        "keys per node: {counts:?}"
    );
}

fn aof_config(node: &RedisProc, asserted: bool) -> RedisConfig {
    RedisConfig {
        durability: Durability::Aof,
        aof_always_asserted: asserted,
        ..RedisConfig::single(&node.url(), &prefix())
    }
}

fn refused(e: StoreError) -> String {
    match e {
        StoreError::Refused(m) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn aof_mode_refuses_a_redis_that_could_lose_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = RedisProc::start(dir.path(), &["--appendonly", "no"]);
    let msg = refused(
        RedisStore::open(&aof_config(&node, false))
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("`appendonly` is `no`, must be `yes`"), "{msg}");
    assert!(
        msg.contains("`appendfsync` is `everysec`, must be `always`"),
        "{msg}"
    );
    assert!(msg.contains("CONFIG SET appendfsync always"), "{msg}");

    // Fixed at runtime: the next attempt is accepted, no restart of Redis needed.
    let mut c = node.client();
    for (k, v) in [("appendonly", "yes"), ("appendfsync", "always")] {
        let _: () = ::redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(&mut c)
            .unwrap();
    }
    RedisStore::open(&aof_config(&node, false)).await.unwrap();
}

#[tokio::test]
async fn aof_mode_with_config_renamed_needs_the_operators_assertion_and_aof_on() {
    let dir = tempfile::tempdir().unwrap();
    let renamed = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--rename-command",
        "CONFIG",
        "",
    ];
    let node = RedisProc::start(&dir.path().join("on"), &renamed);
    let msg = refused(
        RedisStore::open(&aof_config(&node, false))
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("cannot be checked"), "{msg}");
    assert!(msg.contains("aof_always_asserted"), "{msg}");
    RedisStore::open(&aof_config(&node, true)).await.unwrap();

    // The assertion fills in only what cannot be read: INFO still shows AOF off.
    let off = RedisProc::start(
        &dir.path().join("off"),
        &["--appendonly", "no", "--rename-command", "CONFIG", ""],
    );
    let msg = refused(RedisStore::open(&aof_config(&off, true)).await.unwrap_err());
    assert!(msg.contains("aof_enabled:0"), "{msg}");
}

fn replicas_config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig {
        durability: Durability::Replicas,
        replicas: 1,
        // Generous: a loaded CI machine can hold a caught-up replica's ack for a while.
        wait_timeout: Duration::from_secs(2),
        ..RedisConfig::single(url, prefix)
    }
}

/// Wait until `primary` reports `n` connected replicas, each caught up.
fn replicas_online(primary: &RedisProc, n: usize) {
    wait_until(Duration::from_secs(30), "replicas online", || {
        let mut c = primary.client();
        let info: String = ::redis::cmd("INFO")
            .arg("replication")
            .query(&mut c)
            .unwrap_or_default();
        info.lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count()
            == n
    });
}

#[tokio::test]
async fn replicas_mode_acknowledges_only_what_a_replica_holds() {
    let dir = tempfile::tempdir().unwrap();
    let primary = RedisProc::start(&dir.path().join("p"), &[]);
    let prefix = prefix();
    let msg = refused(
        RedisStore::open(&replicas_config(&primary.url(), &prefix))
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("0 replica(s) connected, 1 required"), "{msg}");

    let port = primary.port.to_string();
    let mut replica = RedisProc::start(&dir.path().join("r"), &["--replicaof", "127.0.0.1", &port]);
    replicas_online(&primary, 1);
    let store = RedisStore::open(&replicas_config(&primary.url(), &prefix))
        .await
        .unwrap();
    let a = conformance::record("a", "alice", Utc::now());
    assert_insert(&store, &a, LONG, None, Inserted::New).await;
    // Acknowledged means the replica has it.
    let mut rc = replica.client();
    let on_replica: bool = ::redis::cmd("EXISTS")
        .arg(store.key("action", &a.key))
        .query(&mut rc)
        .unwrap();
    assert!(on_replica);

    // No replica: the write happens on the primary but is never acknowledged, so it is retried;
    // the redelivery finds it (`duplicate`) and is acknowledged once a replica holds it.
    replica.kill9();
    let b = conformance::record("b", "bob", Utc::now());
    let err = store
        .insert_action(&b, Duration::from_secs(60), None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("0 of 1 replicas"), "{err}");
    replica.restart();
    replicas_online(&primary, 1);
    assert_insert(&store, &b, LONG, None, Inserted::Duplicate).await;
}

/// A primary, its replica and three sentinels (quorum 2) on free ports.
struct Sentinels {
    primary: RedisProc,
    replica: RedisProc,
    sentinels: Vec<RedisProc>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    fn start() -> Sentinels {
        let dir = tempfile::tempdir().unwrap();
        let primary = RedisProc::start(&dir.path().join("p"), &[]);
        let port = primary.port.to_string();
        let replica = RedisProc::start(&dir.path().join("r"), &["--replicaof", "127.0.0.1", &port]);
        replicas_online(&primary, 1);
        let sentinels = (0..3)
            .map(|i| {
                let d = dir.path().join(format!("s{i}"));
                std::fs::create_dir_all(&d).unwrap();
                let conf = d.join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "sentinel monitor ledger 127.0.0.1 {port} 2\n\
                         sentinel down-after-milliseconds ledger 1000\n\
                         sentinel failover-timeout ledger 10000\n\
                         sentinel parallel-syncs ledger 1\n"
                    ),
                )
                .unwrap();
                RedisProc::start(&d, &[conf.to_str().unwrap(), "--sentinel"])
            })
            .collect();
        Sentinels {
            primary,
            replica,
            sentinels,
            _dir: dir,
        }
    }

    /// The primary's port as the sentinels see it.
    fn primary_port(&self) -> Option<u16> {
        let mut c = self.sentinels[0].client();
        let addr: Option<(String, u16)> = ::redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("ledger")
            .query(&mut c)
            .ok()?;
        addr.map(|(_, p)| p)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_loses_nothing_acknowledged_in_replicas_mode() {
    let mut ha = Sentinels::start();
    // Every sentinel knows the replica and its peers before anything fails.
    for s in &ha.sentinels {
        wait_until(
            Duration::from_secs(30),
            "sentinels see replica and peers",
            || {
                let mut c = s.client();
                let master: Vec<String> = ::redis::cmd("SENTINEL")
                    .arg("master")
                    .arg("ledger")
                    .query(&mut c)
                    .unwrap_or_default();
                let field = |name: &str| {
                    master
                        .iter()
                        .position(|f| f == name)
                        .and_then(|i| master.get(i + 1))
                        .and_then(|v| v.parse::<u32>().ok())
                };
                field("num-slaves") == Some(1) && field("num-other-sentinels") == Some(2)
            },
        );
    }
    let config = RedisConfig {
        url: None,
        sentinel: Some(SentinelConfig {
            master_name: "ledger".into(),
            urls: ha.sentinels.iter().map(|s| s.url()).collect(),
            db: 0,
            username: None,
            password: None,
        }),
        ..replicas_config("redis://unused", &prefix())
    };
    let store = RedisStore::open(&config).await.unwrap();
    let (old_port, new_port) = (ha.primary.port, ha.replica.port);

    // Write records one after another, each retried until acknowledged; the primary is SIGKILLed
    // after the 40th acknowledgement, and rejoins (as a replica of the new primary) once the
    // sentinels have promoted the replica.
    let mut acked = Vec::new();
    let mut errors = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for i in 0..120 {
        let rec = conformance::record(&format!("r{i}"), &format!("user{i}"), Utc::now());
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "writes never resumed"
            );
            match store
                .insert_action(&rec, Duration::from_secs(600), None)
                .await
            {
                Ok(Inserted::New | Inserted::Duplicate) => break,
                Ok(other) => panic!("{other:?}"),
                Err(e) => {
                    assert!(e.is_retryable(), "{e:?}");
                    errors += 1;
                    if ha.primary_port() == Some(new_port) && !ping_ok(&ha.primary) {
                        let p = new_port.to_string();
                        ha.primary.restart_with(&["--replicaof", "127.0.0.1", &p]);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        acked.push(rec.key.clone());
        if i == 40 {
            ha.primary.kill9();
        }
    }
    assert_eq!(
        ha.primary_port(),
        Some(new_port),
        "the replica was promoted"
    );
    assert_ne!(old_port, new_port);
    assert!(errors > 0, "the failover was noticed");

    // Everything acknowledged is on the new primary, read through a fresh connection to it.
    let direct = RedisStore::connect(&ha.replica.url(), &config.key_prefix)
        .await
        .unwrap();
    for key in &acked {
        assert!(
            direct.get_action(key).await.unwrap().is_some(),
            "acknowledged action {key} lost in the failover"
        );
    }
    assert_eq!(acked.len(), 120);
}

fn ping_ok(p: &RedisProc) -> bool {
    ::redis::Client::open(p.url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
        .is_ok()
}
