//! [`AuditStore`](crate::ledger::AuditStore) cases: one chain, batches, concurrent appends.

use std::sync::Arc;

use super::*;

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
