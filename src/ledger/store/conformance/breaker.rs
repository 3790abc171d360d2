//! [`BreakerStore`](crate::ledger::BreakerStore) cases: trips, windows, resets, concurrent admissions.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::*;

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
