use std::sync::Arc;

use super::*;
use crate::ledger::store::conformance::{self, LONG, assert_insert};
use crate::ledger::{ActionStore, AuditStore};

/// The shared test Redis.
const URL: &str = "redis://127.0.0.1:6379/0";

/// A random prefix, so parallel tests (and other helpers) never see each other's keys.
fn prefix() -> String {
    format!("deprovd-test-{}:", uuid::Uuid::new_v4().simple())
}

/// Delete every key under `prefix`; returns how many there were.
async fn cleanup(store: &RedisStore, prefix: &str) -> usize {
    let mut conn = store.conn.clone();
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            deleted += keys.len();
            let _: () = ::redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            return deleted;
        }
        cursor = next;
    }
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let prefix = prefix();
            let store = RedisStore::connect(URL, &prefix).await.unwrap();
            let shared: Arc<dyn StateStore> = Arc::new(store.clone());
            // Run the case in its own task so that keys are cleaned up even when it fails.
            let outcome = tokio::spawn(conformance::$name(shared)).await;
            cleanup(&store, &prefix).await;
            if let Err(e) = outcome {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    )*};
}

conformance::for_each_case!(conformance_tests);

async fn exists(store: &RedisStore, key: &str) -> bool {
    let mut conn = store.conn.clone();
    let n: i64 = ::redis::cmd("EXISTS")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    n == 1
}

#[tokio::test]
async fn failed_action_deletes_its_coalesce_key_but_succeeded_keeps_it() {
    // The insert script also ignores a slot whose holder no longer absorbs, so the conformance
    // suite cannot see the slot itself; this checks the key is really gone (no stale slot left
    // to absorb alerts if the action were re-planned).
    let prefix = prefix();
    let store = RedisStore::connect(URL, &prefix).await.unwrap();
    let now = Utc::now();
    let mut a = conformance::record("a", "alice", now);
    let mut b = conformance::record("b", "bob", now);
    for r in [&a, &b] {
        assert_insert(&store, r, LONG, None, Inserted::New).await;
    }
    let slot = |r: &ActionRecord| store.key("coalesce", &Derived::of(r).coalesce);
    assert!(exists(&store, &slot(&a)).await && exists(&store, &slot(&b)).await);
    a.state = crate::ledger::ActionState::Failed;
    b.state = crate::ledger::ActionState::Succeeded;
    store.put_action(&a).await.unwrap();
    store.put_action(&b).await.unwrap();
    let (a_slot, b_slot) = (
        exists(&store, &slot(&a)).await,
        exists(&store, &slot(&b)).await,
    );
    cleanup(&store, &prefix).await;
    assert!(!a_slot, "failed action kept its coalesce slot");
    assert!(b_slot, "succeeded action lost its coalesce slot");
}

/// A loopback TCP proxy to the test Redis that can be cut, to simulate an outage without touching
/// the shared server. Aborting the task drops the listener and every proxied connection.
async fn proxy(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            conns.spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:6379").await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_unavailable_and_the_store_recovers_when_redis_returns() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let up = proxy(listener).await;
    let prefix = prefix();
    let store = RedisStore::connect(&format!("redis://{addr}/0"), &prefix)
        .await
        .unwrap();
    let a = conformance::record("a", "alice", Utc::now());
    assert_insert(&store, &a, LONG, None, Inserted::New).await;

    up.abort();
    let _ = up.await;
    let err = store.ping().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let b = conformance::record("b", "bob", Utc::now());
    let err = store
        .insert_action(&b, Duration::from_secs(60), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

    let up = proxy(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while store.ping().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inserted = store.insert_action(&b, Duration::from_secs(60), None).await;
    let kept = store.get_action(&a.key).await;
    cleanup(&store, &prefix).await;
    up.abort();
    assert_eq!(inserted.unwrap(), Inserted::New);
    assert_eq!(kept.unwrap(), Some(a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_appending_at_once_form_one_audit_chain() {
    // Separate stores have separate cached heads, like two processes: every race is a conflict
    // that the script must catch.
    let prefix = prefix();
    let a = RedisStore::connect(URL, &prefix).await.unwrap();
    let b = RedisStore::connect(URL, &prefix).await.unwrap();
    let draft = |who: &str, i: usize| {
        crate::audit::AuditDraft::new(
            crate::audit::AuditKind::ApiCall,
            crate::audit::Actor::system(who),
            serde_json::json!({ "i": i }),
        )
    };
    let (ra, rb) = tokio::join!(
        async {
            for i in 0..40 {
                a.append_audit(vec![draft("a", i)]).await.unwrap();
            }
        },
        async {
            for i in 0..40 {
                b.append_audit(vec![draft("b", i), draft("b", i)])
                    .await
                    .unwrap();
            }
        }
    );
    let ((), ()) = (ra, rb);
    let all = a.audit_range(1, 0).await;
    let head = b.audit_head().await;
    cleanup(&a, &prefix).await;
    let all = all.unwrap();
    assert_eq!(all.len(), 120);
    assert_eq!(crate::audit::verify(&all), Ok(120));
    assert_eq!(head.unwrap().unwrap().hash, all[119].hash);
}

#[tokio::test]
async fn config_opens_a_redis_store_under_its_prefix() {
    let prefix = prefix();
    let config = crate::ledger::store::StoreConfig {
        backend: crate::ledger::store::Backend::Redis,
        redis: RedisConfig::single(URL, &prefix),
        ..Default::default()
    };
    let store = config.open().await.unwrap();
    let a = conformance::record("a", "alice", Utc::now());
    assert_insert(&*store, &a, LONG, None, Inserted::New).await;
    let direct = RedisStore::connect(URL, &prefix).await.unwrap();
    let seen = direct.get_action(&a.key).await.unwrap();
    cleanup(&direct, &prefix).await;
    assert_eq!(seen, Some(a));
}

#[tokio::test]
async fn connect_to_a_closed_port_fails_fast_as_unavailable() {
    // Bind then drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = tokio::time::Instant::now();
    let err = RedisStore::connect(&format!("redis://:hunter2@127.0.0.1:{port}/0"), "deprovd:")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let shown = err.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
}

#[tokio::test]
async fn connect_with_an_invalid_url_is_not_retryable() {
    let err = RedisStore::connect("http://:hunter2@127.0.0.1/", "deprovd:")
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn records_are_json_under_the_prefix_and_cleanup_finds_them_all() {
    let prefix = prefix();
    let store = RedisStore::connect(URL, &prefix).await.unwrap();
    let a = conformance::record("a", "alice", Utc::now());
    assert_insert(&store, &a, LONG, None, Inserted::New).await;
    store
        .claim(&a.key, "w", Duration::from_secs(60))
        .await
        .unwrap();

    let mut conn = store.conn.clone();
    let raw: String = ::redis::cmd("GET")
        .arg(format!("{prefix}{{ledger}}:action:{}", a.key))
        .query_async(&mut conn)
        .await
        .unwrap();
    let parsed: ActionRecord = serde_json::from_str(&raw).unwrap();
    assert_eq!(parsed, a);

    // record, due, lane, pending, created, state, subject, alert, coalesce slot, claim.
    assert_eq!(cleanup(&store, &prefix).await, 10);
    assert_eq!(cleanup(&store, &prefix).await, 0);
}

/// A ledger written before lanes existed (or by an older replica) has due actions in no lane:
/// connecting indexes them, so the executor (which claims only through lanes) still runs them.
#[tokio::test]
async fn connecting_to_a_ledger_without_lanes_puts_its_due_actions_in_their_lanes() {
    let prefix = prefix();
    let store = RedisStore::connect(URL, &prefix).await.unwrap();
    let now = Utc::now();
    let a = conformance::record("a", "alice", now);
    assert_insert(&store, &a, LONG, None, Inserted::New).await;
    // As an older version wrote it: the due index only.
    let mut conn = store.conn.clone();
    let _: i64 = ::redis::cmd("DEL")
        .arg(store.key("lane", "okta"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let lane = [crate::ledger::LaneRequest {
        connector: "okta",
        limit: 4,
    }];
    let ttl = Duration::from_secs(60);
    assert!(
        store.claim_lanes(&lane, now, "w", ttl).await.unwrap()[0]
            .claimed
            .is_empty()
    );

    let store = RedisStore::connect(URL, &prefix).await.unwrap();
    let found = store.claim_lanes(&lane, now, "w", ttl).await.unwrap();
    assert_eq!(found[0].claimed, vec![a.key.clone()]);
    cleanup(&store, &prefix).await;
}
