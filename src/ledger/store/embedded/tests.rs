use std::sync::Arc;

use super::*;
use crate::ledger::store::conformance::{self, LONG, assert_coalesced, assert_insert};
use crate::ledger::{ActionStore, AuditStore};

/// A fresh store in a temporary directory (kept alive by the returned guard).
fn fresh() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    (dir, store)
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, store) = fresh();
            let store: Arc<dyn StateStore> = Arc::new(store);
            conformance::$name(store).await;
        }
    )*};
}

conformance::for_each_case!(conformance_tests);

#[tokio::test]
async fn reopening_after_drop_sees_every_committed_record_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let (a, b) = (
        conformance::record("a", "alice", now),
        conformance::record("b", "bob", now),
    );
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_insert(&store, &a, LONG, None, Inserted::New).await;
        assert_insert(&store, &b, LONG, None, Inserted::New).await;
        store
            .claim(&a.key, "worker-1", Duration::from_secs(60))
            .await
            .unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.get_action(&a.key).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_action(&b.key).await.unwrap(), Some(b.clone()));
    assert_eq!(store.pending_count().await.unwrap(), 2);
    assert_eq!(store.due_actions(now, 10).await.unwrap().len(), 2);
    assert!(
        !store
            .claim(&a.key, "worker-2", Duration::from_secs(60))
            .await
            .unwrap()
    );
    // The coalesce slot survived too.
    let c = conformance::record("c", "alice", now);
    assert_coalesced(&store, &c, LONG, None, &a).await;
}

#[tokio::test]
async fn failed_action_removes_its_coalesce_slot_but_succeeded_keeps_it() {
    // The insert also ignores a slot whose holder no longer absorbs, so the conformance suite
    // cannot see the slot itself; this checks the table directly.
    let (_dir, store) = fresh();
    let now = Utc::now();
    let mut a = conformance::record("a", "alice", now);
    let mut b = conformance::record("b", "bob", now);
    for r in [&a, &b] {
        assert_insert(&store, r, LONG, None, Inserted::New).await;
    }
    let has_slot = |r: &ActionRecord| {
        let tx = store.db.begin_read().unwrap();
        let slots = tx.open_table(COALESCE).unwrap();
        slots
            .get(Derived::of(r).coalesce.as_str())
            .unwrap()
            .is_some()
    };
    assert!(has_slot(&a) && has_slot(&b));
    a.state = crate::ledger::ActionState::Failed;
    b.state = crate::ledger::ActionState::Succeeded;
    store.put_action(&a).await.unwrap();
    store.put_action(&b).await.unwrap();
    assert!(!has_slot(&a), "failed action kept its coalesce slot");
    assert!(has_slot(&b), "succeeded action lost its coalesce slot");
}

/// Environment variable that turns [`crash_child_writes_then_aborts`] into a real crash.
const CRASH_DIR_ENV: &str = "DEPROVD_LEDGER_CRASH_DIR";

/// Child half of [`committed_records_survive_a_process_abort`]: a no-op unless started by it.
#[test]
fn crash_child_writes_then_aborts() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(Path::new(&dir)).unwrap();
        let now = Utc::now();
        for i in 0..20 {
            let r = conformance::record(&format!("crash-{i}"), &format!("user-{i}"), now);
            assert_insert(&store, &r, LONG, None, Inserted::New).await;
        }
    });
    // No destructors, no clean shutdown: as if the process were killed.
    std::process::abort();
}

#[tokio::test]
async fn committed_records_survive_a_process_abort() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ledger::store::embedded::tests::crash_child_writes_then_aborts",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");

    let store = EmbeddedStore::open(dir.path()).unwrap();
    let now = Utc::now();
    for i in 0..20 {
        let want = conformance::record(&format!("crash-{i}"), &format!("user-{i}"), now);
        let got = store.get_action(&want.key).await.unwrap();
        assert!(got.is_some(), "record crash-{i} was committed but is gone");
    }
    assert_eq!(store.pending_count().await.unwrap(), 20);
}

#[tokio::test]
async fn edited_deleted_and_swapped_audit_records_in_the_file_are_named() {
    use crate::audit::{Actor, AuditDraft, AuditKind, Tamper, Verifier, verify};
    let (_dir, store) = fresh();
    let drafts = (0..5)
        .map(|i| {
            AuditDraft::new(
                AuditKind::Guard,
                Actor::system("t"),
                serde_json::json!({"i": i}),
            )
        })
        .collect();
    let orig = store.append_audit(drafts).await.unwrap();
    let bytes = |r: &AuditRecord| serde_json::to_vec(r).unwrap();

    let mut edited = orig[2].clone();
    edited.detail["i"] = 42.into();
    store.tamper_audit(3, Some(&bytes(&edited)));
    // The five records are one batch: its seal (on record 5) no longer matches.
    let e = verify(&store.audit_range(1, 0).await.unwrap()).unwrap_err();
    assert_eq!(e.seq, 1);
    assert!(
        matches!(e.tamper, Tamper::BatchEdited { last: 5, .. }),
        "{e}"
    );
    store.tamper_audit(3, Some(&bytes(&orig[2])));

    store.tamper_audit(2, None);
    let e = verify(&store.audit_range(1, 0).await.unwrap()).unwrap_err();
    assert_eq!((e.seq, e.tamper), (2, Tamper::Missing { found: 3 }));
    store.tamper_audit(2, Some(&bytes(&orig[1])));

    store.tamper_audit(4, Some(&bytes(&orig[4])));
    store.tamper_audit(5, Some(&bytes(&orig[3])));
    let e = verify(&store.audit_range(1, 0).await.unwrap()).unwrap_err();
    assert_eq!((e.seq, e.tamper), (4, Tamper::Missing { found: 5 }));
    store.tamper_audit(4, Some(&bytes(&orig[3])));
    store.tamper_audit(5, Some(&bytes(&orig[4])));

    store.tamper_audit(5, None);
    let mut v = Verifier::new();
    for r in &store.audit_range(1, 0).await.unwrap() {
        v.feed(r).unwrap();
    }
    let head = store.audit_head().await.unwrap();
    let e = v.finish(head.as_ref()).unwrap_err();
    assert_eq!(
        (e.seq, e.tamper),
        (5, Tamper::Truncated { last: 4, head: 5 })
    );
}

#[tokio::test]
async fn a_second_open_of_the_same_dir_is_refused_with_a_clear_error() {
    let (dir, _store) = fresh();
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("already open"), "{err}");
}

/// A ledger written before lanes existed has due actions in no lane: opening it indexes them, so
/// the executor (which claims only through lanes) still runs them.
#[tokio::test]
async fn opening_a_ledger_without_lanes_puts_its_due_actions_in_their_lanes() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let a = conformance::record("a", "alice", now);
    let lane = [crate::ledger::LaneRequest {
        connector: "okta",
        limit: 4,
    }];
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_insert(&store, &a, LONG, None, Inserted::New).await;
        // As an older version wrote it: the due index only.
        let tx = store.db.begin_write().unwrap();
        tx.delete_table(LANES).unwrap();
        tx.open_table(LANES).unwrap();
        tx.commit().unwrap();
        let found = store.claim_lanes(&lane, now, "w", Duration::from_secs(60));
        assert!(found.await.unwrap()[0].claimed.is_empty());
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let found = store
        .claim_lanes(&lane, now, "w", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(found[0].claimed, vec![a.key.clone()]);
}
