//! Reversing recorded actions from their pre-state, for a whole lockout or one action.

use super::*;

/// Key of the reversal of `original`: derived from it alone, so any number of restore requests (for
/// a lockout or for the action directly) record one reversal.
pub(crate) fn restore_key(original: &ActionRecord, reversal: Operation) -> String {
    action_key(
        &original.key,
        RESTORE_RULE,
        &original.connector,
        reversal,
        &original.subject,
    )
}

/// What to do about one original action when restoring.
pub(super) enum Plan {
    Reverse(Box<ActionRecord>),
    Report(RestoreItem),
}

pub(super) fn reversal_for(original: &ActionRecord, request_id: &str, actor: &str) -> Plan {
    let report = |note: String| {
        Plan::Report(RestoreItem {
            original_key: original.key.clone(),
            connector: original.connector.clone(),
            operation: original.operation,
            reversal_key: None,
            reversal_operation: None,
            state: original.state,
            note: Some(note),
        })
    };
    let Some(op) = original.operation.reversal() else {
        return report(format!("{} cannot be undone", original.operation));
    };
    match original.state {
        ActionState::Succeeded | ActionState::Restored => {}
        s if s.is_pending() => {
            return report(format!(
                "still {}: restore again once it has settled",
                s.as_str()
            ));
        }
        s => {
            return report(format!(
                "{}: nothing was changed, nothing to undo",
                s.as_str()
            ));
        }
    }
    let now = Utc::now();
    let new = NewAction {
        key: restore_key(original, op),
        origin: Origin::Manual {
            request_id: request_id.to_string(),
            actor: actor.to_string(),
        },
        rule: RESTORE_RULE.to_string(),
        policy_digest: String::new(),
        subject: original.subject.clone(),
        connector: original.connector.clone(),
        operation: op,
        reason: format!("restore: {}", original.reason),
    };
    Plan::Reverse(Box::new(ActionRecord {
        pre_state: original.pre_state.clone(),
        reverses: Some(original.key.clone()),
        ..ActionRecord::planned(new, now)
    }))
}

/// Record the reversals of `originals` and report, per original, what happened.
async fn restore_all(
    pipeline: &Pipeline,
    id: &str,
    originals: Vec<ActionRecord>,
    actor: &str,
) -> Result<Restored, LockoutError> {
    let mut items = Vec::new();
    let mut reversals = Vec::new();
    for o in &originals {
        match reversal_for(o, id, actor) {
            Plan::Reverse(r) => reversals.push((o.key.clone(), *r)),
            Plan::Report(item) => items.push(item),
        }
    }
    // Reversals never coalesce: an earlier, unrelated enable must not absorb this one.
    let recorded = pipeline
        .record_manual(
            reversals.iter().map(|(_, r)| r.clone()).collect(),
            id,
            false,
        )
        .await?;
    for ((original_key, r), rec) in reversals.iter().zip(recorded) {
        // Report the reversal's live state: a replayed restore shows how far the first one got.
        let key = rec.coalesced_into.clone().unwrap_or(rec.key.clone());
        let live = pipeline.store.get_action(&key).await?;
        let original_op = originals
            .iter()
            .find(|o| &o.key == original_key)
            .map_or(r.operation, |o| o.operation);
        items.push(RestoreItem {
            original_key: original_key.clone(),
            connector: r.connector.clone(),
            operation: original_op,
            reversal_key: Some(key),
            reversal_operation: Some(r.operation),
            state: live.as_ref().map_or(rec.state, |l| l.state),
            note: live.and_then(|l| l.note).or(rec.note),
        });
    }
    Ok(Restored {
        id: id.to_string(),
        actions: items,
    })
}

/// Reverse every succeeded action of lockout `id`. Idempotent: each reversal's key derives from the
/// action it undoes.
pub(crate) async fn restore_lockout(
    pipeline: &Pipeline,
    id: &str,
    actor: &str,
) -> Result<Restored, LockoutError> {
    let lockout = get(pipeline.store.as_ref(), id).await?;
    let mut originals = Vec::new();
    for la in &lockout.actions {
        if let Some(rec) = pipeline.store.get_action(&la.key).await? {
            originals.push(rec);
        }
    }
    let restored = restore_all(pipeline, id, originals, actor).await?;
    tracing::info!(lockout_id = %id, actor, "lockout restore recorded");
    Ok(restored)
}

/// Reverse one action, automatic or manual. Unlike a lockout restore, an action that cannot be
/// reversed now is an error ([`LockoutError::NotRestorable`]): the caller asked for exactly this one.
pub(crate) async fn restore_action(
    pipeline: &Pipeline,
    key: &str,
    actor: &str,
) -> Result<Restored, LockoutError> {
    let original = pipeline
        .store
        .get_action(key)
        .await?
        .ok_or_else(|| LockoutError::NotFound(format!("no action with key `{key}`")))?;
    if let Plan::Report(item) = reversal_for(&original, key, actor) {
        return Err(LockoutError::NotRestorable(format!(
            "action `{key}` ({} on {}) cannot be restored: {}",
            original.operation,
            original.connector,
            item.note.unwrap_or_default()
        )));
    }
    let restored = restore_all(pipeline, key, vec![original], actor).await?;
    tracing::info!(action_key = %key, actor, "action restore recorded");
    Ok(restored)
}
