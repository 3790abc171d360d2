//! The one behaviour suite every [`StateStore`] must pass. Each case gets a fresh, empty store; the
//! backends' test modules run every case through [`for_each_case!`], so a case added here runs against
//! both backends.
//!
//! Cases take `Arc<dyn StateStore>` (rather than `&dyn`) so that the concurrency cases can hand the
//! store to spawned tasks; the others only borrow it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::action::Operation;
use crate::ledger::{
    ActionFilter, ActionRecord, ActionState, BreakerScope, Inserted, Origin, StateStore, action_key,
};

/// Calls `$m!` with the name of every case.
macro_rules! for_each_case {
    ($m:ident) => {
        $m!(
            ping_and_missing_get,
            insert_new_then_duplicate_leaves_record_unchanged,
            live_action_coalesces_later_alert_and_links_it,
            held_action_absorbs_held_ones_but_a_runnable_one_supersedes_it,
            non_absorbing_new_action_takes_no_coalesce_slot,
            failed_action_frees_its_coalesce_slot,
            succeeded_action_keeps_its_coalesce_slot,
            action_that_does_not_hold_the_slot_cannot_free_it,
            coalesce_slot_expires_after_the_window,
            due_index_orders_earliest_first_and_follows_state,
            next_due_at_tracks_the_earliest_due_action,
            claim_is_exclusive_and_released_only_by_its_owner,
            claim_expires_after_its_ttl,
            list_filters_newest_first,
            pending_count_follows_state,
            put_of_an_unknown_action_is_an_error,
            concurrent_inserts_of_one_key_yield_exactly_one_new,
            concurrent_alerts_for_one_subject_coalesce_into_one_action,
            huge_window_and_ttl_are_accepted,
            json_documents_round_trip_and_nx_keeps_the_first,
            json_document_expires_after_its_ttl,
            concurrent_nx_puts_of_one_document_have_one_winner,
            audit_appends_chain_from_genesis,
            audit_batch_is_consecutive_and_range_reads_page,
            concurrent_audit_appends_form_one_valid_chain,
            breaker_trips_once_when_distinct_subjects_exceed_the_threshold,
            breaker_window_forgets_subjects_admitted_before_it,
            breaker_reset_closes_and_empties_the_window,
            concurrent_admissions_trip_the_breaker_exactly_once,
        );
    };
}
pub(crate) use for_each_case;

/// A long window: nothing in a test expires by accident.
const LONG: Duration = Duration::from_secs(600);

/// `t` truncated to whole milliseconds (index precision), so equality after a round trip is exact.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

/// A planned `disable_account` on okta for `subject`, caused by alert `alert-{name}`, due at
/// `created`. Its key depends only on `name` and `subject`; records for the same subject share a
/// coalesce key. `pre_state` holds an empty array and a long float, which a store that re-encodes
/// records (e.g. through Lua's cjson) would mangle.
pub(crate) fn record(name: &str, subject: &str, created: DateTime<Utc>) -> ActionRecord {
    let created = ms(created);
    ActionRecord {
        key: action_key(name, "rule-1", "okta", Operation::DisableAccount, subject),
        origin: Origin::Alert {
            alert_id: format!("alert-{name}"),
            dedup_key: name.to_string(),
            alert_time: created,
        },
        rule: "rule-1".into(),
        policy_digest: "sha256:0123".into(),
        subject: subject.to_string(),
        connector: "okta".into(),
        operation: Operation::DisableAccount,
        reason: "impossible travel".into(),
        state: ActionState::Planned,
        attempts: 0,
        next_attempt_at: Some(created),
        last_error: None,
        response: None,
        pre_state: Some(
            serde_json::json!({"groups": [], "status": "ACTIVE", "score": 0.123_456_789_012_345_6}),
        ),
        reverses: None,
        linked_alerts: Vec::new(),
        note: Some("ünïcödé ✓".into()),
        requested_by: None,
        expires_at: None,
        created_at: created,
        updated_at: created,
    }
}

/// Poll `f` until it returns true or `within` passes (then fail with `what`).
async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn keys(v: &[ActionRecord]) -> Vec<&str> {
    v.iter().map(|a| a.key.as_str()).collect()
}

pub(crate) async fn ping_and_missing_get(store: Arc<dyn StateStore>) {
    store.ping().await.unwrap();
    assert_eq!(store.get_action("no-such-key").await.unwrap(), None);
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(store.next_due_at().await.unwrap(), None);
    assert!(
        store
            .list_actions(&ActionFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn insert_new_then_duplicate_leaves_record_unchanged(store: Arc<dyn StateStore>) {
    let a = record("a", "alice", Utc::now());
    assert_eq!(
        store.insert_action(&a, LONG, None).await.unwrap(),
        Inserted::New
    );
    assert_eq!(store.get_action(&a.key).await.unwrap(), Some(a.clone()));

    let mut again = a.clone();
    again.reason = "a redelivery must not overwrite".into();
    again.state = ActionState::Failed;
    assert_eq!(
        store
            .insert_action(&again, LONG, Some("alert-a"))
            .await
            .unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(store.get_action(&a.key).await.unwrap(), Some(a));
    assert_eq!(store.pending_count().await.unwrap(), 1);
}

pub(crate) async fn live_action_coalesces_later_alert_and_links_it(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let a = record("a", "alice", now);
    assert_eq!(
        store.insert_action(&a, LONG, None).await.unwrap(),
        Inserted::New
    );

    let b = record("b", "alice", now);
    assert_eq!(
        store
            .insert_action(&b, LONG, Some("alert-b"))
            .await
            .unwrap(),
        Inserted::Coalesced(a.key.clone())
    );
    // The absorbed action is not recorded; the alert is linked to the live one, once.
    assert_eq!(store.get_action(&b.key).await.unwrap(), None);
    let c = record("c", "alice", now);
    assert_eq!(
        store
            .insert_action(&c, LONG, Some("alert-b"))
            .await
            .unwrap(),
        Inserted::Coalesced(a.key.clone())
    );
    let stored = store.get_action(&a.key).await.unwrap().unwrap();
    assert_eq!(stored.linked_alerts, vec!["alert-b".to_string()]);

    // A different subject, connector or operation is a different slot.
    let other = record("d", "bob", now);
    assert_eq!(
        store.insert_action(&other, LONG, None).await.unwrap(),
        Inserted::New
    );
    let mut other_op = record("e", "alice", now);
    other_op.operation = Operation::RevokeSessions;
    assert_eq!(
        store.insert_action(&other_op, LONG, None).await.unwrap(),
        Inserted::New
    );

    // Linked alerts survive an update that did not carry them.
    let mut running = a.clone();
    running.state = ActionState::Running;
    store.put_action(&running).await.unwrap();
    let stored = store.get_action(&a.key).await.unwrap().unwrap();
    assert_eq!(stored.state, ActionState::Running);
    assert_eq!(stored.linked_alerts, vec!["alert-b".to_string()]);
}

pub(crate) async fn held_action_absorbs_held_ones_but_a_runnable_one_supersedes_it(
    store: Arc<dyn StateStore>,
) {
    let now = Utc::now();
    let held = |name: &str| {
        let mut h = record(name, "alice", now);
        h.state = ActionState::AwaitingApproval;
        h.next_attempt_at = None;
        h
    };
    let h = held("h");
    assert_eq!(
        store.insert_action(&h, LONG, None).await.unwrap(),
        Inserted::New
    );
    // Another alert that would be held too (breaker still open) is absorbed by the held action.
    let h2 = held("h2");
    assert_eq!(
        store
            .insert_action(&h2, LONG, Some("alert-h2"))
            .await
            .unwrap(),
        Inserted::Coalesced(h.key.clone())
    );

    // A runnable action (a responder's lockout) is not absorbed: it is recorded, due, and takes the
    // slot; the store reports the held action it supersedes and leaves that one to the caller.
    let m = record("m", "alice", now);
    assert_eq!(
        store.insert_action(&m, LONG, Some("req-m")).await.unwrap(),
        Inserted::Superseded(h.key.clone())
    );
    assert_eq!(store.get_action(&m.key).await.unwrap(), Some(m.clone()));
    assert_eq!(
        store.due_actions(now, 10).await.unwrap(),
        vec![m.key.clone()]
    );
    let still_held = store.get_action(&h.key).await.unwrap().unwrap();
    assert_eq!(still_held.state, ActionState::AwaitingApproval);
    assert_eq!(still_held.linked_alerts, vec!["alert-h2".to_string()]);

    // The runnable action holds the slot now: later actions, held or not, coalesce into it.
    let n = record("n", "alice", now);
    assert_eq!(
        store
            .insert_action(&n, LONG, Some("alert-n"))
            .await
            .unwrap(),
        Inserted::Coalesced(m.key.clone())
    );
    let h3 = held("h3");
    assert_eq!(
        store
            .insert_action(&h3, LONG, Some("alert-h3"))
            .await
            .unwrap(),
        Inserted::Coalesced(m.key.clone())
    );
    let mut linked = store
        .get_action(&m.key)
        .await
        .unwrap()
        .unwrap()
        .linked_alerts;
    linked.sort();
    assert_eq!(linked, vec!["alert-h3".to_string(), "alert-n".to_string()]);
}

pub(crate) async fn non_absorbing_new_action_takes_no_coalesce_slot(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let mut skipped = record("s", "alice", now);
    skipped.state = ActionState::Skipped;
    skipped.next_attempt_at = None;
    assert_eq!(
        store.insert_action(&skipped, LONG, None).await.unwrap(),
        Inserted::New
    );

    let a = record("a", "alice", now);
    assert_eq!(
        store.insert_action(&a, LONG, None).await.unwrap(),
        Inserted::New
    );

    // A zero window takes no slot either.
    let z = record("z", "zed", now);
    assert_eq!(
        store.insert_action(&z, Duration::ZERO, None).await.unwrap(),
        Inserted::New
    );
    let z2 = record("z2", "zed", now);
    assert_eq!(
        store.insert_action(&z2, LONG, None).await.unwrap(),
        Inserted::New
    );
}

pub(crate) async fn failed_action_frees_its_coalesce_slot(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let mut a = record("a", "alice", now);
    assert_eq!(
        store.insert_action(&a, LONG, None).await.unwrap(),
        Inserted::New
    );
    a.state = ActionState::Failed;
    a.next_attempt_at = None;
    a.last_error = Some("okta said 403".into());
    store.put_action(&a).await.unwrap();

    let b = record("b", "alice", now);
    assert_eq!(
        store
            .insert_action(&b, LONG, Some("alert-b"))
            .await
            .unwrap(),
        Inserted::New
    );
    // And the new action holds the slot now.
    let c = record("c", "alice", now);
    assert_eq!(
        store.insert_action(&c, LONG, None).await.unwrap(),
        Inserted::Coalesced(b.key.clone())
    );
    assert!(
        store
            .get_action(&a.key)
            .await
            .unwrap()
            .unwrap()
            .linked_alerts
            .is_empty()
    );
}

pub(crate) async fn succeeded_action_keeps_its_coalesce_slot(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let mut a = record("a", "alice", now);
    assert_eq!(
        store.insert_action(&a, LONG, None).await.unwrap(),
        Inserted::New
    );
    a.state = ActionState::Succeeded;
    a.next_attempt_at = None;
    store.put_action(&a).await.unwrap();

    let b = record("b", "alice", now);
    assert_eq!(
        store
            .insert_action(&b, LONG, Some("alert-b"))
            .await
            .unwrap(),
        Inserted::Coalesced(a.key.clone())
    );
    let stored = store.get_action(&a.key).await.unwrap().unwrap();
    assert_eq!(stored.state, ActionState::Succeeded);
    assert_eq!(stored.linked_alerts, vec!["alert-b".to_string()]);
}

pub(crate) async fn action_that_does_not_hold_the_slot_cannot_free_it(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    // `early` takes no slot (zero window), so `a` is new and takes it.
    let mut early = record("early", "alice", now);
    assert_eq!(
        store
            .insert_action(&early, Duration::ZERO, None)
            .await
            .unwrap(),
        Inserted::New
    );
    let a = record("a", "alice", now);
    assert_eq!(
        store.insert_action(&a, LONG, None).await.unwrap(),
        Inserted::New
    );

    // `early` failing must leave `a`'s slot alone.
    early.state = ActionState::Failed;
    early.next_attempt_at = None;
    store.put_action(&early).await.unwrap();
    let c = record("c", "alice", now);
    assert_eq!(
        store.insert_action(&c, LONG, None).await.unwrap(),
        Inserted::Coalesced(a.key.clone())
    );
}

pub(crate) async fn coalesce_slot_expires_after_the_window(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let window = Duration::from_millis(800);
    let a = record("a", "alice", now);
    assert_eq!(
        store.insert_action(&a, window, None).await.unwrap(),
        Inserted::New
    );
    let b = record("b", "alice", now);
    assert_eq!(
        store
            .insert_action(&b, window, Some("alert-b"))
            .await
            .unwrap(),
        Inserted::Coalesced(a.key.clone())
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let mut n = 0;
    let holder = loop {
        n += 1;
        let r = record(&format!("p{n}"), "alice", now);
        match store.insert_action(&r, window, None).await.unwrap() {
            Inserted::New => break r.key,
            Inserted::Coalesced(k) => assert_eq!(k, a.key),
            Inserted::Duplicate => panic!("fresh key reported as duplicate"),
            Inserted::Superseded(k) => panic!("no held action here, yet `{k}` was superseded"),
        }
        assert!(Instant::now() < deadline, "the coalesce slot never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "slot vanished long before its window"
    );
    // The original action is still there (only the slot expired) and the new one holds the slot.
    assert!(store.get_action(&a.key).await.unwrap().is_some());
    let c = record("c", "alice", now);
    assert_eq!(
        store.insert_action(&c, LONG, None).await.unwrap(),
        Inserted::Coalesced(holder)
    );
}

pub(crate) async fn due_index_orders_earliest_first_and_follows_state(store: Arc<dyn StateStore>) {
    let now = ms(Utc::now());
    let t0 = now - chrono::Duration::seconds(60);
    let at = |name: &str, subject: &str, next: DateTime<Utc>| {
        let mut r = record(name, subject, t0);
        r.next_attempt_at = Some(next);
        r
    };
    let mut a = at("a", "u-a", t0 + chrono::Duration::seconds(3));
    let mut b = at("b", "u-b", t0 + chrono::Duration::seconds(1));
    let mut c = at("c", "u-c", t0 + chrono::Duration::seconds(2));
    let future = at("f", "u-f", now + chrono::Duration::hours(1));
    let mut held = at("h", "u-h", t0);
    held.state = ActionState::AwaitingApproval;
    // A running action's `next_attempt_at` is the end of its executor's lease.
    let mut running = at("r", "u-r", now + chrono::Duration::minutes(30));
    running.state = ActionState::Running;
    let mut unscheduled = record("n", "u-n", t0);
    unscheduled.next_attempt_at = None;
    for r in [&a, &b, &c, &future, &held, &running, &unscheduled] {
        assert_eq!(
            store.insert_action(r, LONG, None).await.unwrap(),
            Inserted::New
        );
    }

    assert_eq!(
        store.due_actions(now, 10).await.unwrap(),
        vec![b.key.clone(), c.key.clone(), a.key.clone()]
    );
    assert_eq!(
        store.due_actions(now, 2).await.unwrap(),
        vec![b.key.clone(), c.key.clone()]
    );
    assert!(store.due_actions(t0, 10).await.unwrap().is_empty());
    // Once the lease ends (the executor died mid-call), the running action is due again.
    let after_lease = store
        .due_actions(now + chrono::Duration::minutes(31), 10)
        .await
        .unwrap();
    assert!(after_lease.contains(&running.key), "{after_lease:?}");
    assert!(!after_lease.contains(&held.key));
    // `<= now` is inclusive.
    assert_eq!(
        store
            .due_actions(t0 + chrono::Duration::seconds(1), 10)
            .await
            .unwrap(),
        vec![b.key.clone()]
    );

    b.state = ActionState::Running;
    b.next_attempt_at = None;
    store.put_action(&b).await.unwrap();
    assert_eq!(
        store.due_actions(now, 10).await.unwrap(),
        vec![c.key.clone(), a.key.clone()]
    );

    c.next_attempt_at = Some(now + chrono::Duration::hours(2));
    store.put_action(&c).await.unwrap();
    assert_eq!(
        store.due_actions(now, 10).await.unwrap(),
        vec![a.key.clone()]
    );

    a.state = ActionState::Succeeded;
    store.put_action(&a).await.unwrap(); // keeps next_attempt_at, but is no longer planned
    assert!(store.due_actions(now, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .due_actions(now + chrono::Duration::hours(3), 10)
            .await
            .unwrap(),
        vec![running.key.clone(), future.key.clone(), c.key.clone()]
    );
    assert_eq!(
        store.due_actions(now, 0).await.unwrap(),
        Vec::<String>::new()
    );
}

pub(crate) async fn next_due_at_tracks_the_earliest_due_action(store: Arc<dyn StateStore>) {
    let now = ms(Utc::now());
    assert_eq!(store.next_due_at().await.unwrap(), None);
    let mut a = record("a", "u-a", now);
    a.next_attempt_at = Some(now + chrono::Duration::seconds(30));
    let mut b = record("b", "u-b", now);
    b.next_attempt_at = Some(now + chrono::Duration::seconds(10));
    store.insert_action(&a, LONG, None).await.unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), a.next_attempt_at);
    store.insert_action(&b, LONG, None).await.unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), b.next_attempt_at);

    b.state = ActionState::Cancelled;
    b.next_attempt_at = None;
    store.put_action(&b).await.unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), a.next_attempt_at);

    a.next_attempt_at = Some(now + chrono::Duration::seconds(5));
    store.put_action(&a).await.unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), a.next_attempt_at);

    a.state = ActionState::Failed;
    a.next_attempt_at = None;
    store.put_action(&a).await.unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), None);
}

pub(crate) async fn claim_is_exclusive_and_released_only_by_its_owner(store: Arc<dyn StateStore>) {
    let ttl = Duration::from_secs(60);
    assert!(store.claim("k1", "worker-a", ttl).await.unwrap());
    assert!(!store.claim("k1", "worker-b", ttl).await.unwrap());
    assert!(
        !store.claim("k1", "worker-a", ttl).await.unwrap(),
        "a claim is not re-entrant"
    );
    // Another key is independent.
    assert!(store.claim("k2", "worker-b", ttl).await.unwrap());

    store.release("k1", "worker-b").await.unwrap();
    assert!(
        !store.claim("k1", "worker-c", ttl).await.unwrap(),
        "a non-owner released the claim"
    );

    store.release("k1", "worker-a").await.unwrap();
    assert!(store.claim("k1", "worker-c", ttl).await.unwrap());
    // Releasing what one does not hold (any more) is harmless.
    store.release("k1", "worker-a").await.unwrap();
    store.release("never-claimed", "worker-a").await.unwrap();
    assert!(!store.claim("k1", "worker-a", ttl).await.unwrap());
}

pub(crate) async fn claim_expires_after_its_ttl(store: Arc<dyn StateStore>) {
    assert!(
        store
            .claim("k", "crashed-worker", Duration::from_millis(300))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim("k", "worker-b", Duration::from_secs(60))
            .await
            .unwrap()
    );
    eventually(Duration::from_secs(10), "the claim to lapse", || {
        let store = Arc::clone(&store);
        async move {
            store
                .claim("k", "worker-b", Duration::from_secs(60))
                .await
                .unwrap()
        }
    })
    .await;
    // The new claim is worker-b's: the old owner cannot release it.
    store.release("k", "crashed-worker").await.unwrap();
    assert!(
        !store
            .claim("k", "worker-c", Duration::from_secs(60))
            .await
            .unwrap()
    );
}

pub(crate) async fn list_filters_newest_first(store: Arc<dyn StateStore>) {
    let t = ms(Utc::now()) - chrono::Duration::minutes(10);
    let sec = |n: i64| t + chrono::Duration::seconds(n);

    let a1 = record("a1", "alice", sec(1));
    let mut a2 = record("a2", "alice", sec(2));
    a2.operation = Operation::RevokeSessions; // another coalesce slot than a1
    let b1 = record("b1", "bob", sec(3));
    let mut b2 = record("b2", "bob", sec(4));
    b2.connector = "entra".into();
    b2.state = ActionState::AwaitingApproval;
    let mut m1 = record("m1", "carol", sec(5));
    m1.origin = Origin::Manual {
        request_id: "req-1".into(),
        actor: "responder@example.com".into(),
    };
    for r in [&a1, &a2, &b1, &b2, &m1] {
        assert_eq!(
            store.insert_action(r, LONG, None).await.unwrap(),
            Inserted::New
        );
    }
    a2.state = ActionState::Succeeded;
    store.put_action(&a2).await.unwrap();
    // alert-x is coalesced into a1.
    let x = record("x", "alice", sec(6));
    assert_eq!(
        store
            .insert_action(&x, LONG, Some("alert-x"))
            .await
            .unwrap(),
        Inserted::Coalesced(a1.key.clone())
    );

    let list = |f: ActionFilter| {
        let store = Arc::clone(&store);
        async move { store.list_actions(&f).await.unwrap() }
    };
    let all = list(ActionFilter::default()).await;
    assert_eq!(keys(&all), [&m1.key, &b2.key, &b1.key, &a2.key, &a1.key]);
    assert_eq!(
        all[3].state,
        ActionState::Succeeded,
        "listing returns the current record"
    );
    assert_eq!(all[4].linked_alerts, vec!["alert-x".to_string()]);

    let f = |subject: Option<&str>,
             state: Option<ActionState>,
             alert: Option<&str>,
             limit: usize| ActionFilter {
        subject: subject.map(str::to_string),
        state,
        alert_id: alert.map(str::to_string),
        limit,
    };
    assert_eq!(
        keys(&list(f(None, None, None, 2)).await),
        [&m1.key, &b2.key]
    );
    assert_eq!(
        keys(&list(f(Some("alice"), None, None, 0)).await),
        [&a2.key, &a1.key]
    );
    assert_eq!(
        keys(&list(f(Some("alice"), None, None, 1)).await),
        [&a2.key]
    );
    assert_eq!(
        keys(&list(f(None, Some(ActionState::Planned), None, 0)).await),
        [&m1.key, &b1.key, &a1.key]
    );
    assert_eq!(
        keys(&list(f(Some("bob"), Some(ActionState::AwaitingApproval), None, 0)).await),
        [&b2.key]
    );
    assert_eq!(
        keys(&list(f(None, None, Some("alert-a1"), 0)).await),
        [&a1.key]
    );
    assert_eq!(
        keys(&list(f(None, None, Some("alert-x"), 0)).await),
        [&a1.key]
    );
    assert_eq!(
        keys(
            &list(f(
                Some("alice"),
                Some(ActionState::Planned),
                Some("alert-a1"),
                0
            ))
            .await
        ),
        [&a1.key]
    );
    assert!(
        list(f(Some("alice"), None, Some("alert-b1"), 0))
            .await
            .is_empty()
    );
    assert!(
        list(f(None, Some(ActionState::Failed), None, 0))
            .await
            .is_empty()
    );
    assert!(list(f(Some("nobody"), None, None, 0)).await.is_empty());
    // Manual actions have no alert id.
    assert!(list(f(None, None, Some("req-1"), 0)).await.is_empty());

    // State index follows updates.
    let mut b1_done = b1.clone();
    b1_done.state = ActionState::Failed;
    store.put_action(&b1_done).await.unwrap();
    assert_eq!(
        keys(&list(f(None, Some(ActionState::Planned), None, 0)).await),
        [&m1.key, &a1.key]
    );
    assert_eq!(
        keys(&list(f(None, Some(ActionState::Failed), None, 0)).await),
        [&b1.key]
    );
}

pub(crate) async fn pending_count_follows_state(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let mut a = record("a", "u-a", now);
    let mut b = record("b", "u-b", now);
    b.state = ActionState::AwaitingApproval;
    let mut c = record("c", "u-c", now);
    c.state = ActionState::Skipped;
    for r in [&a, &b, &c] {
        store.insert_action(r, LONG, None).await.unwrap();
    }
    assert_eq!(store.pending_count().await.unwrap(), 2);
    a.state = ActionState::Running;
    store.put_action(&a).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 2);
    a.state = ActionState::Succeeded;
    store.put_action(&a).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 1);
    b.state = ActionState::Cancelled;
    store.put_action(&b).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 0);
    // Re-planning a finished action (a manual retry) counts it again.
    a.state = ActionState::Planned;
    store.put_action(&a).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 1);
}

pub(crate) async fn put_of_an_unknown_action_is_an_error(store: Arc<dyn StateStore>) {
    let a = record("ghost", "alice", Utc::now());
    let err = store.put_action(&a).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains(&a.key), "{err}");
    assert_eq!(store.get_action(&a.key).await.unwrap(), None);
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

pub(crate) async fn concurrent_inserts_of_one_key_yield_exactly_one_new(
    store: Arc<dyn StateStore>,
) {
    let a = record("a", "alice", Utc::now());
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = Arc::clone(&store);
            let a = a.clone();
            tokio::spawn(async move {
                store
                    .insert_action(&a, LONG, Some("alert-a"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| **o == Inserted::New).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Inserted::Duplicate)
            .count(),
        31,
        "{outcomes:?}"
    );
    assert_eq!(store.pending_count().await.unwrap(), 1);
    assert_eq!(store.get_action(&a.key).await.unwrap(), Some(a));
}

pub(crate) async fn concurrent_alerts_for_one_subject_coalesce_into_one_action(
    store: Arc<dyn StateStore>,
) {
    let now = Utc::now();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            let r = record(&format!("storm-{i}"), "alice", now);
            tokio::spawn(async move {
                let alert = format!("alert-storm-{i}");
                (
                    r.key.clone(),
                    store.insert_action(&r, LONG, Some(&alert)).await.unwrap(),
                )
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let winners: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| *o == Inserted::New)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0].0.clone();
    assert!(
        outcomes
            .iter()
            .all(|(k, o)| *k == winner || *o == Inserted::Coalesced(winner.clone())),
        "{outcomes:?}"
    );
    let stored = store.get_action(&winner).await.unwrap().unwrap();
    assert_eq!(stored.linked_alerts.len(), 31, "{:?}", stored.linked_alerts);
    assert_eq!(store.pending_count().await.unwrap(), 1);
    assert_eq!(
        store
            .list_actions(&ActionFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

pub(crate) async fn huge_window_and_ttl_are_accepted(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let a = record("a", "alice", now);
    assert_eq!(
        store.insert_action(&a, Duration::MAX, None).await.unwrap(),
        Inserted::New
    );
    let b = record("b", "alice", now);
    assert_eq!(
        store.insert_action(&b, Duration::MAX, None).await.unwrap(),
        Inserted::Coalesced(a.key.clone())
    );
    assert!(store.claim(&a.key, "w1", Duration::MAX).await.unwrap());
    assert!(!store.claim(&a.key, "w2", Duration::MAX).await.unwrap());
    // A zero TTL still takes the claim (for at least a moment) rather than erroring.
    assert!(store.claim("other", "w1", Duration::ZERO).await.unwrap());
}

pub(crate) async fn json_documents_round_trip_and_nx_keeps_the_first(store: Arc<dyn StateStore>) {
    let first =
        serde_json::json!({"id": "l-1", "groups": [], "n": 0.123_456_789_012_345_6, "ü": "✓"});
    assert_eq!(store.get_json("lockout", "l-1").await.unwrap(), None);
    assert!(
        store
            .put_json("lockout", "l-1", &first, true, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_json("lockout", "l-1").await.unwrap(),
        Some(first.clone())
    );
    let second = serde_json::json!({"id": "other"});
    assert!(
        !store
            .put_json("lockout", "l-1", &second, true, None)
            .await
            .unwrap(),
        "NX must not overwrite"
    );
    assert_eq!(
        store.get_json("lockout", "l-1").await.unwrap(),
        Some(first.clone())
    );
    // Namespaces are separate; a plain put overwrites.
    assert_eq!(store.get_json("idem", "l-1").await.unwrap(), None);
    assert!(
        store
            .put_json("lockout", "l-1", &second, false, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_json("lockout", "l-1").await.unwrap(),
        Some(second)
    );
}

pub(crate) async fn json_document_expires_after_its_ttl(store: Arc<dyn StateStore>) {
    let doc = serde_json::json!({"fingerprint": "abc"});
    assert!(
        store
            .put_json("idem", "k", &doc, true, Some(Duration::from_millis(200)))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_json("idem", "k").await.unwrap(),
        Some(doc.clone())
    );
    let s = store.clone();
    eventually(Duration::from_secs(5), "document expires", move || {
        let s = s.clone();
        async move { s.get_json("idem", "k").await.unwrap().is_none() }
    })
    .await;
    assert!(
        store.put_json("idem", "k", &doc, true, None).await.unwrap(),
        "an expired document no longer blocks NX"
    );
}

pub(crate) async fn concurrent_nx_puts_of_one_document_have_one_winner(store: Arc<dyn StateStore>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let doc = serde_json::json!({ "writer": i });
            s.put_json("idem", "race", &doc, true, Some(LONG))
                .await
                .unwrap()
                .then_some(i)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(i) = t.await.unwrap() {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        store.get_json("idem", "race").await.unwrap(),
        Some(serde_json::json!({ "writer": winners[0] }))
    );
}

fn audit_draft(i: usize) -> crate::audit::AuditDraft {
    use crate::audit::{Actor, AuditDraft, AuditKind};
    let mut d = AuditDraft::new(
        AuditKind::Decision,
        Actor::system("conformance"),
        serde_json::json!({"i": i, "groups": [], "score": 0.123_456_789_012_345_6, "note": "ünïcödé ✓"}),
    );
    d.subject = Some(format!("user{i}@corp.example"));
    d.alert_id = Some(format!("alert-{i}"));
    d.policy_digest = Some("sha256:0123".into());
    d
}

pub(crate) async fn audit_appends_chain_from_genesis(store: Arc<dyn StateStore>) {
    use crate::audit::{AuditHead, GENESIS, verify};
    assert_eq!(store.audit_head().await.unwrap(), None);
    assert!(store.audit_range(1, 0).await.unwrap().is_empty());
    assert!(store.append_audit(Vec::new()).await.unwrap().is_empty());
    let first = store.append_audit(vec![audit_draft(1)]).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].seq, first[0].prev.as_str()), (1, GENESIS));
    let second = store.append_audit(vec![audit_draft(2)]).await.unwrap();
    assert_eq!(second[0].seq, 2);
    assert_eq!(second[0].prev, first[0].hash);
    let all = store.audit_range(1, 0).await.unwrap();
    assert_eq!(all, [first[0].clone(), second[0].clone()]);
    assert_eq!(verify(&all), Ok(2));
    assert_eq!(
        store.audit_head().await.unwrap(),
        Some(AuditHead {
            seq: 2,
            hash: second[0].hash.clone()
        })
    );
}

pub(crate) async fn audit_batch_is_consecutive_and_range_reads_page(store: Arc<dyn StateStore>) {
    use crate::audit::verify;
    let batch = store
        .append_audit((1..=5).map(audit_draft).collect())
        .await
        .unwrap();
    let seqs: Vec<u64> = batch.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    store
        .append_audit((6..=10).map(audit_draft).collect())
        .await
        .unwrap();
    let page = store.audit_range(4, 3).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5, 6]);
    assert_eq!(page[0], batch[3]);
    let tail = store.audit_range(9, 100).await.unwrap();
    assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), [9, 10]);
    assert!(store.audit_range(11, 10).await.unwrap().is_empty());
    assert_eq!(verify(&store.audit_range(1, 0).await.unwrap()), Ok(10));
}

pub(crate) async fn concurrent_audit_appends_form_one_valid_chain(store: Arc<dyn StateStore>) {
    use crate::audit::verify;
    const TASKS: usize = 8;
    const EACH: usize = 10;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = store.clone();
        set.spawn(async move {
            for i in 0..EACH {
                let n = t * EACH + i;
                // Mix single records and batches of two.
                let drafts = if n % 3 == 0 {
                    vec![audit_draft(n), audit_draft(n + 1000)]
                } else {
                    vec![audit_draft(n)]
                };
                store.append_audit(drafts).await.unwrap();
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let want = (0..TASKS * EACH)
        .map(|n| if n % 3 == 0 { 2 } else { 1 })
        .sum::<usize>();
    let all = store.audit_range(1, 0).await.unwrap();
    assert_eq!(all.len(), want);
    assert_eq!(verify(&all), Ok(want as u64));
    // Every batch of two landed adjacent, in order.
    for (i, r) in all.iter().enumerate() {
        let n = r.detail["i"].as_u64().unwrap() as usize;
        if n < 1000 && n % 3 == 0 {
            assert_eq!(all[i + 1].detail["i"], n + 1000, "batch split at {}", r.seq);
        }
    }
    assert_eq!(store.audit_head().await.unwrap().unwrap().seq, want as u64);
}

fn scope(name: &str, threshold: u64, window: Duration) -> BreakerScope {
    BreakerScope {
        name: name.to_string(),
        threshold,
        window,
    }
}

/// (subjects, open, tripped) per scope of one admission.
async fn admit(
    store: &dyn StateStore,
    scopes: &[BreakerScope],
    subject: &str,
    now: DateTime<Utc>,
) -> Vec<(u64, bool, bool)> {
    let got = store.breaker_admit(scopes, subject, now).await.unwrap();
    assert_eq!(
        got.iter().map(|a| a.scope.as_str()).collect::<Vec<_>>(),
        scopes.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "one answer per scope, in order"
    );
    got.into_iter()
        .map(|a| (a.subjects, a.open, a.tripped))
        .collect()
}

pub(crate) async fn breaker_trips_once_when_distinct_subjects_exceed_the_threshold(
    store: Arc<dyn StateStore>,
) {
    let scopes = [scope("global", 3, LONG), scope("okta", 5, LONG)];
    let now = ms(Utc::now());
    let s = store.as_ref();
    assert_eq!(
        admit(s, &scopes, "alice", now).await,
        [(1, false, false); 2]
    );
    assert_eq!(admit(s, &scopes, "bob", now).await, [(2, false, false); 2]);
    assert_eq!(
        admit(s, &scopes, "alice", now).await,
        [(2, false, false); 2],
        "a subject already in the window is not counted twice"
    );
    assert_eq!(
        admit(s, &scopes, "carol", now).await,
        [(3, false, false); 2]
    );
    assert_eq!(
        admit(s, &scopes, "dave", now).await,
        [(4, true, true), (4, false, false)],
        "more than 3 distinct subjects trips the global scope only"
    );
    assert_eq!(
        admit(s, &scopes, "erin", now).await,
        [(5, true, false), (5, false, false)],
        "open stays open; only the tripping admission says tripped"
    );
    assert_eq!(
        admit(s, &scopes, "frank", now).await,
        [(6, true, false), (6, true, true)]
    );
    let status = store.breaker_status(&scopes, now).await.unwrap();
    assert_eq!(status.len(), 2);
    assert!(status.iter().all(|st| st.open && st.subjects == 6));
    assert_eq!(status[0].opened_at, Some(now));
    assert_eq!(status[0].threshold, 3);
    assert_eq!(status[1].window, LONG);
    let other = store
        .breaker_status(&[scope("scim", 5, LONG)], now)
        .await
        .unwrap();
    assert!(!other[0].open && other[0].subjects == 0, "{other:?}");
}

pub(crate) async fn breaker_window_forgets_subjects_admitted_before_it(store: Arc<dyn StateStore>) {
    let hour = Duration::from_secs(3600);
    let scopes = [scope("global", 1, hour)];
    let t0 = ms(Utc::now());
    let s = store.as_ref();
    assert_eq!(admit(s, &scopes, "alice", t0).await, [(1, false, false)]);
    let later = t0 + chrono::Duration::minutes(61);
    assert_eq!(
        admit(s, &scopes, "bob", later).await,
        [(1, false, false)],
        "alice left the window, so bob is the only subject"
    );
    let st = store.breaker_status(&scopes, later).await.unwrap();
    assert_eq!(st[0].subjects, 1);
    let st = store
        .breaker_status(&scopes, later + chrono::Duration::minutes(61))
        .await
        .unwrap();
    assert_eq!(st[0].subjects, 0, "status counts the window as of `now`");
    // A re-admitted subject moves to the end of the window.
    assert_eq!(
        admit(s, &scopes, "bob", later + chrono::Duration::minutes(30)).await,
        [(1, false, false)]
    );
    assert_eq!(
        admit(s, &scopes, "carol", later + chrono::Duration::minutes(70)).await,
        [(2, true, true)],
        "bob was re-admitted 40 minutes before carol: both are in the window"
    );
}

pub(crate) async fn breaker_reset_closes_and_empties_the_window(store: Arc<dyn StateStore>) {
    let scopes = [scope("global", 1, LONG), scope("okta", 1, LONG)];
    let now = ms(Utc::now());
    let s = store.as_ref();
    admit(s, &scopes, "alice", now).await;
    assert_eq!(admit(s, &scopes, "bob", now).await, [(2, true, true); 2]);
    assert_eq!(
        store.breaker_reset(&["global".to_string()]).await.unwrap(),
        ["global"]
    );
    let st = store.breaker_status(&scopes, now).await.unwrap();
    assert_eq!(
        (st[0].open, st[0].subjects, st[0].opened_at),
        (false, 0, None)
    );
    assert!(st[1].open, "resetting one scope leaves the others alone");
    assert_eq!(
        admit(s, &scopes, "carol", now).await,
        [(1, false, false), (3, true, false)],
        "after a reset the window starts empty"
    );
    let all = ["global".to_string(), "okta".to_string()];
    assert_eq!(store.breaker_reset(&all).await.unwrap(), ["okta"]);
    assert!(
        store.breaker_reset(&all).await.unwrap().is_empty(),
        "nothing was open"
    );
}

pub(crate) async fn concurrent_admissions_trip_the_breaker_exactly_once(
    store: Arc<dyn StateStore>,
) {
    let scopes = Arc::new([scope("global", 5, LONG)]);
    let now = ms(Utc::now());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let scopes = scopes.clone();
        tasks.push(tokio::spawn(async move {
            store
                .breaker_admit(&scopes[..], &format!("user-{i}"), now)
                .await
                .unwrap()
                .remove(0)
        }));
    }
    let mut admitted_closed = 0;
    let mut trips = 0;
    for t in tasks {
        let a = t.await.unwrap();
        admitted_closed += usize::from(!a.open);
        trips += usize::from(a.tripped);
    }
    assert_eq!(trips, 1, "exactly one admission trips it");
    assert_eq!(admitted_closed, 5, "exactly the threshold got through");
    let st = store.breaker_status(&scopes[..], now).await.unwrap();
    assert_eq!((st[0].open, st[0].subjects), (true, 20));
}
