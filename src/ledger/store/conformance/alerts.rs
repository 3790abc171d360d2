//! [`AlertStore`](crate::ledger::AlertStore) cases: retained alerts page oldest first, prune by time.

use std::sync::Arc;

use chrono::TimeDelta;

use super::*;
use crate::ledger::RetainedAlert;

fn retained(id: &str, received_at: DateTime<Utc>) -> RetainedAlert {
    let alert = serde_json::from_value(serde_json::json!({
        "id": id,
        "source": {"vendor": "test", "product": "conformance"},
        "time": "2026-01-01T00:00:00Z",
        "severity": "high",
        "category": "credential_theft",
        "title": "ünïcödé ✓",
        "subjects": [{"kind": "user", "email": format!("{id}@example.com")}],
        "raw": {"groups": [], "score": 0.123_456_789_012_345_6},
    }))
    .expect("a canonical alert");
    RetainedAlert {
        received_at: ms(received_at),
        alert,
    }
}

fn ids(v: &[RetainedAlert]) -> Vec<&str> {
    v.iter().map(|a| a.alert.id.as_str()).collect()
}

pub(crate) async fn retained_alerts_page_oldest_first_from_since(store: Arc<dyn StateStore>) {
    let t0 = Utc::now() - TimeDelta::hours(3);
    let batch = vec![
        retained("c", t0 + TimeDelta::hours(2)),
        retained("a", t0),
        retained("b2", t0 + TimeDelta::hours(1)),
        retained("b1", t0 + TimeDelta::hours(1)),
    ];
    store.retain_alerts(&batch).await.unwrap();
    // A redelivery (same alert, same instant) is kept once.
    store.retain_alerts(&batch[..1]).await.unwrap();
    let all = store.retained_alerts(t0, None, 100).await.unwrap();
    assert_eq!(ids(&all), ["a", "b1", "b2", "c"]);
    assert_eq!(all[3], batch[0], "round trip is exact");
    let since = store
        .retained_alerts(t0 + TimeDelta::minutes(30), None, 100)
        .await
        .unwrap();
    assert_eq!(ids(&since), ["b1", "b2", "c"]);
    // Paging by cursor, two at a time, even across alerts received at the same millisecond.
    let page1 = store.retained_alerts(t0, None, 2).await.unwrap();
    assert_eq!(ids(&page1), ["a", "b1"]);
    let page2 = store
        .retained_alerts(t0, Some(&page1[1].cursor()), 2)
        .await
        .unwrap();
    assert_eq!(ids(&page2), ["b2", "c"]);
    let page3 = store
        .retained_alerts(t0, Some(&page2[1].cursor()), 2)
        .await
        .unwrap();
    assert!(page3.is_empty());
}

pub(crate) async fn pruning_forgets_alerts_received_before_the_cutoff(store: Arc<dyn StateStore>) {
    let t0 = Utc::now() - TimeDelta::days(40);
    store
        .retain_alerts(&[
            retained("old1", t0),
            retained("old2", t0 + TimeDelta::days(5)),
            retained("new", Utc::now()),
        ])
        .await
        .unwrap();
    let removed = store
        .prune_alerts(Utc::now() - TimeDelta::days(30))
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let left = store.retained_alerts(t0, None, 100).await.unwrap();
    assert_eq!(ids(&left), ["new"]);
    assert_eq!(store.prune_alerts(t0).await.unwrap(), 0);
}
