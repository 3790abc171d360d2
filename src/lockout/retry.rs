//! A responder's retry of a failed action (`POST /v1/actions/{key}/retry`, `deprovd actions retry`):
//! the action is planned again with a fresh retry budget, audited first, and handed to the executor.
//! Only a `failed` action can be retried: anything else is still running, already done, or was
//! stopped on purpose (skipped, cancelled, restored), and re-running it would override that.

use std::time::Duration;

use chrono::Utc;

use super::LockoutError;
use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::ledger::{ActionRecord, ActionState};
use crate::pipeline::Pipeline;

/// How long the retry holds the action's claim: a store round trip or three.
const RETRY_CLAIM: Duration = Duration::from_secs(10);

/// Plan failed action `key` again, as `actor`. The claim keeps an executor or an approver from
/// changing it meanwhile.
pub(crate) async fn retry_action(
    pipeline: &Pipeline,
    key: &str,
    actor: Actor,
) -> Result<ActionRecord, LockoutError> {
    let store = pipeline.store.as_ref();
    let owner = format!("retry-{}", uuid::Uuid::new_v4());
    if !store.claim(key, &owner, RETRY_CLAIM).await? {
        return Err(LockoutError::NotRetryable(format!(
            "action `{key}` is being worked on (claimed); try again in a moment"
        )));
    }
    let result = retry_claimed(pipeline, key, &actor).await;
    if let Err(e) = store.release(key, &owner).await {
        tracing::warn!(action_key = key, error = %e, "retry claim release failed; it expires by itself");
    }
    let rec = result?;
    if let Some(h) = &pipeline.approvals.handoff {
        h.offer(&rec);
    }
    tracing::info!(action_key = key, actor = %actor.name, "retry requested");
    Ok(rec)
}

async fn retry_claimed(
    pipeline: &Pipeline,
    key: &str,
    actor: &Actor,
) -> Result<ActionRecord, LockoutError> {
    let store = pipeline.store.as_ref();
    let mut rec = store
        .get_action(key)
        .await?
        .ok_or_else(|| LockoutError::NotFound(format!("no action with key `{key}`")))?;
    if rec.state != ActionState::Failed {
        return Err(LockoutError::NotRetryable(format!(
            "action `{key}` is {}; only a failed action can be retried",
            rec.state.as_str()
        )));
    }
    let now = Utc::now();
    let previous_error = rec.last_error.clone();
    rec.state = ActionState::Planned;
    rec.state_reason = None;
    rec.attempts = 0;
    rec.next_attempt_at = Some(now);
    rec.note = Some(format!("retry requested by {}", actor.name));
    rec.updated_at = now;
    let mut d = AuditDraft::new(
        AuditKind::ActionState,
        actor.clone(),
        serde_json::json!({
            "event": "retry_requested",
            "state": rec.state,
            "previous_error": previous_error,
            "connector": rec.connector,
            "operation": rec.operation,
        }),
    );
    d.subject = Some(rec.subject.clone());
    d.action_key = Some(rec.key.clone());
    // Audited before the change, like every responder decision.
    store.append_audit(vec![d]).await?;
    store.put_action(&rec).await?;
    Ok(rec)
}
