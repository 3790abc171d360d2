//! [`DocStore`](crate::ledger::DocStore) cases: JSON documents, NX and expiry.

use std::sync::Arc;
use std::time::Duration;

use super::*;

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
