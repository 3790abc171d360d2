//! [`ActionStore::record_transition`](crate::ledger::ActionStore::record_transition): the
//! executor's one write per state change — the record, its audit records and the claim release.

use std::sync::Arc;

use super::*;
use crate::audit::{Actor, AuditDraft, AuditKind, verify};

fn state_draft(a: &ActionRecord) -> AuditDraft {
    let mut d = AuditDraft::new(
        AuditKind::ActionState,
        Actor::system("conformance"),
        serde_json::json!({"state": a.state, "attempts": a.attempts}),
    );
    d.action_key = Some(a.key.clone());
    d.subject = Some(a.subject.clone());
    d
}

pub(crate) async fn transition_writes_state_and_audit_and_releases_the_claim(
    store: Arc<dyn StateStore>,
) {
    let a = record("t", "alice", Utc::now());
    store.insert_action(&a, LONG, None).await.unwrap();
    assert!(store.claim(&a.key, "me", LONG).await.unwrap());

    // The lease: state only, the claim kept.
    let mut running = a.clone();
    running.state = ActionState::Running;
    running.attempts = 1;
    running.next_attempt_at = Some(ms(Utc::now() + chrono::Duration::seconds(60)));
    store
        .record_transition(&running, Vec::new(), None)
        .await
        .unwrap();
    assert_eq!(
        store.get_action(&a.key).await.unwrap(),
        Some(running.clone())
    );
    assert!(
        !store.claim(&a.key, "other", LONG).await.unwrap(),
        "still held"
    );
    assert_eq!(store.audit_head().await.unwrap(), None, "nothing audited");

    // Someone else's release leaves the claim alone.
    store
        .record_transition(&running, Vec::new(), Some("other"))
        .await
        .unwrap();
    assert!(
        !store.claim(&a.key, "other", LONG).await.unwrap(),
        "still held"
    );

    // The outcome: state, its audit record and the release in one step.
    let mut done = running.clone();
    done.state = ActionState::Succeeded;
    done.next_attempt_at = None;
    store
        .record_transition(&done, vec![state_draft(&done)], Some("me"))
        .await
        .unwrap();
    assert_eq!(store.get_action(&a.key).await.unwrap(), Some(done.clone()));
    assert!(
        store.due_actions(Utc::now(), 10).await.unwrap().is_empty(),
        "finished: out of the due index"
    );
    assert_eq!(store.pending_count().await.unwrap(), 0);
    let trail = store.audit_range(1, 0).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].action_key.as_deref(), Some(a.key.as_str()));
    assert_eq!(verify(&trail), Ok(1));
    assert!(
        store.claim(&a.key, "other", LONG).await.unwrap(),
        "released"
    );
}

pub(crate) async fn transition_of_an_unknown_action_is_an_error(store: Arc<dyn StateStore>) {
    let a = record("ghost", "alice", Utc::now());
    let err = store
        .record_transition(&a, Vec::new(), None)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains(&a.key), "{err}");
    assert_eq!(store.get_action(&a.key).await.unwrap(), None);
}

pub(crate) async fn concurrent_transitions_and_appends_form_one_chain(store: Arc<dyn StateStore>) {
    const N: usize = 24;
    let now = Utc::now();
    let actions: Vec<ActionRecord> = (0..N)
        .map(|i| record(&format!("c{i}"), &format!("user{i}"), now))
        .collect();
    for a in &actions {
        store.insert_action(a, LONG, None).await.unwrap();
        assert!(store.claim(&a.key, "me", LONG).await.unwrap());
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, a) in actions.iter().cloned().enumerate() {
        let store = store.clone();
        set.spawn(async move {
            let mut done = a;
            done.state = ActionState::Failed;
            done.next_attempt_at = None;
            let mut drafts = vec![state_draft(&done)];
            if i % 3 == 0 {
                drafts.push(state_draft(&done));
            }
            store
                .record_transition(&done, drafts, Some("me"))
                .await
                .unwrap();
            // An alert's batch in between.
            store
                .append_audit(vec![AuditDraft::new(
                    AuditKind::AlertReceived,
                    Actor::system("conformance"),
                    serde_json::json!({"i": i}),
                )])
                .await
                .unwrap();
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let trail = store.audit_range(1, 0).await.unwrap();
    assert_eq!(trail.len(), N + N + N.div_ceil(3));
    assert_eq!(verify(&trail), Ok(trail.len() as u64));
    for a in &actions {
        let got = store.get_action(&a.key).await.unwrap().unwrap();
        assert_eq!(got.state, ActionState::Failed);
        assert!(
            store.claim(&a.key, "other", LONG).await.unwrap(),
            "released"
        );
    }
    assert_eq!(store.pending_count().await.unwrap(), 0);
}
