//! [`ActionStore`](crate::ledger::ActionStore) cases: insert, dedup, coalescing, the due index, claims, listings.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::*;

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
    assert_insert(&*store, &a, LONG, None, Inserted::New).await;
    assert_eq!(store.get_action(&a.key).await.unwrap(), Some(a.clone()));

    let mut again = a.clone();
    again.reason = "a redelivery must not overwrite".into();
    again.state = ActionState::Failed;
    assert_insert(&*store, &again, LONG, Some("alert-a"), Inserted::Duplicate).await;
    assert_eq!(store.get_action(&a.key).await.unwrap(), Some(a));
    assert_eq!(store.pending_count().await.unwrap(), 1);
}

pub(crate) async fn live_action_coalesces_later_alert_and_links_it(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let a = record("a", "alice", now);
    assert_insert(&*store, &a, LONG, None, Inserted::New).await;

    let b = record("b", "alice", now);
    assert_coalesced(&*store, &b, LONG, Some("alert-b"), &a).await;
    // The absorbed action is not recorded; the alert is linked to the live one, once.
    assert_eq!(store.get_action(&b.key).await.unwrap(), None);
    let c = record("c", "alice", now);
    assert_coalesced(&*store, &c, LONG, Some("alert-b"), &a).await;
    let stored = store.get_action(&a.key).await.unwrap().unwrap();
    assert_eq!(stored.linked_alerts, vec!["alert-b".to_string()]);

    // A different subject, connector or operation is a different slot.
    let other = record("d", "bob", now);
    assert_insert(&*store, &other, LONG, None, Inserted::New).await;
    let mut other_op = record("e", "alice", now);
    other_op.operation = Operation::RevokeSessions;
    assert_insert(&*store, &other_op, LONG, None, Inserted::New).await;

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
    assert_insert(&*store, &h, LONG, None, Inserted::New).await;
    // Another alert that would be held too (breaker still open) is absorbed by the held action.
    let h2 = held("h2");
    assert_coalesced(&*store, &h2, LONG, Some("alert-h2"), &h).await;

    // A runnable action (a responder's lockout) is not absorbed: it is recorded, due, and takes the
    // slot; the store reports the held action it supersedes and leaves that one to the caller.
    let m = record("m", "alice", now);
    assert_insert(
        &*store,
        &m,
        LONG,
        Some("req-m"),
        Inserted::Superseded(h.key.clone()),
    )
    .await;
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
    assert_coalesced(&*store, &n, LONG, Some("alert-n"), &m).await;
    let h3 = held("h3");
    assert_coalesced(&*store, &h3, LONG, Some("alert-h3"), &m).await;
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
    assert_insert(&*store, &skipped, LONG, None, Inserted::New).await;

    let a = record("a", "alice", now);
    assert_insert(&*store, &a, LONG, None, Inserted::New).await;

    // A zero window takes no slot either.
    let z = record("z", "zed", now);
    assert_insert(&*store, &z, Duration::ZERO, None, Inserted::New).await;
    let z2 = record("z2", "zed", now);
    assert_insert(&*store, &z2, LONG, None, Inserted::New).await;
}

pub(crate) async fn failed_action_frees_its_coalesce_slot(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let mut a = record("a", "alice", now);
    assert_insert(&*store, &a, LONG, None, Inserted::New).await;
    a.state = ActionState::Failed;
    a.next_attempt_at = None;
    a.last_error = Some("okta said 403".into());
    store.put_action(&a).await.unwrap();

    let b = record("b", "alice", now);
    assert_insert(&*store, &b, LONG, Some("alert-b"), Inserted::New).await;
    // And the new action holds the slot now.
    let c = record("c", "alice", now);
    assert_coalesced(&*store, &c, LONG, None, &b).await;
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
    assert_insert(&*store, &a, LONG, None, Inserted::New).await;
    a.state = ActionState::Succeeded;
    a.next_attempt_at = None;
    store.put_action(&a).await.unwrap();

    let b = record("b", "alice", now);
    assert_coalesced(&*store, &b, LONG, Some("alert-b"), &a).await;
    let stored = store.get_action(&a.key).await.unwrap().unwrap();
    assert_eq!(stored.state, ActionState::Succeeded);
    assert_eq!(stored.linked_alerts, vec!["alert-b".to_string()]);
}

pub(crate) async fn action_that_does_not_hold_the_slot_cannot_free_it(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    // `early` takes no slot (zero window), so `a` is new and takes it.
    let mut early = record("early", "alice", now);
    assert_insert(&*store, &early, Duration::ZERO, None, Inserted::New).await;
    let a = record("a", "alice", now);
    assert_insert(&*store, &a, LONG, None, Inserted::New).await;

    // `early` failing must leave `a`'s slot alone.
    early.state = ActionState::Failed;
    early.next_attempt_at = None;
    store.put_action(&early).await.unwrap();
    let c = record("c", "alice", now);
    assert_coalesced(&*store, &c, LONG, None, &a).await;
}

pub(crate) async fn coalesce_slot_expires_after_the_window(store: Arc<dyn StateStore>) {
    let now = Utc::now();
    let window = Duration::from_millis(800);
    let a = record("a", "alice", now);
    assert_insert(&*store, &a, window, None, Inserted::New).await;
    let b = record("b", "alice", now);
    assert_coalesced(&*store, &b, window, Some("alert-b"), &a).await;

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
    assert_insert(&*store, &c, LONG, None, Inserted::Coalesced(holder)).await;
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
        assert_insert(&*store, r, LONG, None, Inserted::New).await;
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

/// Each connector is a lane: a claim round takes a lane's due actions most urgent first (manual,
/// then by severity, then oldest due), never reads another lane's backlog, skips what someone holds,
/// and reports the lane's waiting count, oldest due time and next due time.
pub(crate) async fn lanes_claim_per_connector_most_urgent_first(store: Arc<dyn StateStore>) {
    use crate::alert::Severity;
    use crate::ledger::LaneRequest;
    let now = ms(Utc::now());
    let at = |secs: i64| now - chrono::Duration::seconds(secs);
    let on = |name: &str, connector: &str, due: DateTime<Utc>, severity: Option<Severity>| {
        let mut r = record(name, &format!("{name}@example.com"), due);
        r.key = action_key(
            name,
            "rule-1",
            connector,
            Operation::DisableAccount,
            &r.subject,
        );
        r.connector = connector.to_string();
        if let Origin::Alert { severity: s, .. } = &mut r.origin {
            *s = severity;
        }
        r
    };
    // A backlog on `slow`, due long before anything on `fast`.
    let backlog: Vec<ActionRecord> = (0..40)
        .map(|i| {
            on(
                &format!("slow-{i}"),
                "slow",
                at(3600 - i),
                Some(Severity::High),
            )
        })
        .collect();
    let low_old = on("low-old", "fast", at(50), Some(Severity::Low));
    let crit_new = on("crit-new", "fast", at(5), Some(Severity::Critical));
    let crit_old = on("crit-old", "fast", at(10), Some(Severity::Critical));
    let unknown = on("unknown", "fast", at(40), None);
    let mut manual = on("manual", "fast", at(1), None);
    manual.origin = Origin::Manual {
        request_id: "lockout-1".into(),
        actor: "alice".into(),
    };
    let later = on(
        "later",
        "fast",
        now + chrono::Duration::seconds(30),
        Some(Severity::Critical),
    );
    for r in backlog
        .iter()
        .chain([&low_old, &crit_new, &crit_old, &unknown, &manual, &later])
    {
        assert_insert(&*store, r, LONG, None, Inserted::New).await;
    }
    // Someone else holds the older critical one.
    assert!(store.claim(&crit_old.key, "other", LONG).await.unwrap());

    let ask = |fast: usize, slow: usize| {
        [
            LaneRequest {
                connector: "fast",
                limit: fast,
            },
            LaneRequest {
                connector: "slow",
                limit: slow,
            },
            LaneRequest {
                connector: "idle",
                limit: 4,
            },
        ]
    };
    let got = store
        .claim_lanes(&ask(3, 0), now, "me", LONG)
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].claimed,
        vec![
            manual.key.clone(),
            crit_new.key.clone(),
            unknown.key.clone()
        ],
        "manual first, then critical (the held one skipped), then medium (unknown severity)"
    );
    assert_eq!(
        got[0].records,
        vec![
            Some(manual.clone()),
            Some(crit_new.clone()),
            Some(unknown.clone())
        ],
        "claim-and-read: each claimed action comes with its record"
    );
    assert_eq!(got[0].waiting, 2, "the held critical and the low one");
    assert_eq!(got[0].oldest_due, Some(low_old.next_attempt_at.unwrap()));
    assert_eq!(got[0].next_due, Some(later.next_attempt_at.unwrap()));
    assert!(got[1].claimed.is_empty(), "limit 0 only reports");
    assert_eq!(got[1].waiting, 40);
    assert_eq!(got[1].oldest_due, Some(backlog[0].next_attempt_at.unwrap()));
    assert_eq!(got[1].next_due, None);
    assert_eq!(got[2], crate::ledger::LaneDue::default());

    // Claimed actions are not claimed again; the rest follow in order.
    let got = store
        .claim_lanes(&ask(5, 2), now, "me", LONG)
        .await
        .unwrap();
    assert_eq!(got[0].claimed, vec![low_old.key.clone()]);
    assert_eq!(
        got[1].claimed,
        vec![backlog[0].key.clone(), backlog[1].key.clone()]
    );
    assert_eq!(got[1].waiting, 38);

    // A finished action leaves its lane; one that is due again (a retry) re-enters it.
    let mut done = crit_new.clone();
    done.state = ActionState::Succeeded;
    done.next_attempt_at = None;
    store.put_action(&done).await.unwrap();
    let mut retry = unknown.clone();
    retry.next_attempt_at = Some(now + chrono::Duration::seconds(10));
    store.put_action(&retry).await.unwrap();
    let got = store
        .claim_lanes(&ask(0, 0), now + chrono::Duration::seconds(20), "me", LONG)
        .await
        .unwrap();
    assert_eq!(
        got[0].waiting, 4,
        "manual, crit-old, low-old and the retry; not the finished one"
    );
    assert_eq!(got[0].next_due, Some(later.next_attempt_at.unwrap()));
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
        assert_insert(&*store, r, LONG, None, Inserted::New).await;
    }
    a2.state = ActionState::Succeeded;
    store.put_action(&a2).await.unwrap();
    // alert-x is coalesced into a1.
    let x = record("x", "alice", sec(6));
    assert_coalesced(&*store, &x, LONG, Some("alert-x"), &a1).await;

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
        ..ActionFilter::default()
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
    // Connector, rule, creation time and key prefix narrow the listing too.
    let by = |filter: ActionFilter| list(filter);
    assert_eq!(
        keys(
            &by(ActionFilter {
                connector: Some("entra".into()),
                ..ActionFilter::default()
            })
            .await
        ),
        [&b2.key]
    );
    assert_eq!(
        keys(
            &by(ActionFilter {
                since: Some(b1.created_at),
                ..ActionFilter::default()
            })
            .await
        ),
        [&m1.key, &b2.key, &b1.key]
    );
    // Oldest first, through a secondary index and through the creation index, with a limit.
    assert_eq!(
        keys(
            &by(ActionFilter {
                state: Some(ActionState::Planned),
                oldest_first: true,
                ..ActionFilter::default()
            })
            .await
        ),
        [&a1.key, &b1.key, &m1.key]
    );
    assert_eq!(
        keys(
            &by(ActionFilter {
                since: Some(b1.created_at),
                oldest_first: true,
                limit: 2,
                ..ActionFilter::default()
            })
            .await
        ),
        [&b1.key, &b2.key]
    );
    assert_eq!(
        keys(
            &by(ActionFilter {
                key_prefix: Some(b2.key[..10].to_string()),
                ..ActionFilter::default()
            })
            .await
        ),
        [&b2.key]
    );
    assert!(
        by(ActionFilter {
            rule: Some("no-such-rule".into()),
            ..ActionFilter::default()
        })
        .await
        .is_empty()
    );
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
    let a = record("a", "u-a", now);
    let mut b = record("b", "u-b", now);
    b.state = ActionState::AwaitingApproval;
    let mut c = record("c", "u-c", now);
    c.state = ActionState::Skipped;
    for r in [&a, &b, &c] {
        store.insert_action(r, LONG, None).await.unwrap();
    }
    assert_eq!(store.pending_count().await.unwrap(), 2);
    // Each step puts one action in a new state; the count after it. The last re-plans a finished
    // action (a manual retry), which counts it again.
    for (r, state, pending) in [
        (&a, ActionState::Running, 2),
        (&a, ActionState::Succeeded, 1),
        (&b, ActionState::Cancelled, 0),
        (&a, ActionState::Planned, 1),
    ] {
        let mut r = r.clone();
        r.state = state;
        store.put_action(&r).await.unwrap();
        assert_eq!(
            store.pending_count().await.unwrap(),
            pending,
            "after `{}` became {}",
            r.key,
            state.as_str()
        );
    }
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
    assert_insert(&*store, &a, Duration::MAX, None, Inserted::New).await;
    let b = record("b", "alice", now);
    assert_coalesced(&*store, &b, Duration::MAX, None, &a).await;
    assert!(store.claim(&a.key, "w1", Duration::MAX).await.unwrap());
    assert!(!store.claim(&a.key, "w2", Duration::MAX).await.unwrap());
    // A zero TTL still takes the claim (for at least a moment) rather than erroring.
    assert!(store.claim("other", "w1", Duration::ZERO).await.unwrap());
}
