//! What follows a state change: audit records, notices, metrics, dead letters, and the skips the
//! guards order.

use super::*;

impl Executor {
    pub(super) async fn finish_failed(
        &self,
        rec: &mut ActionRecord,
        reason: String,
    ) -> Result<(), crate::ledger::StoreError> {
        rec.state = ActionState::Failed;
        rec.next_attempt_at = None;
        rec.last_error = Some(reason.clone());
        rec.updated_at = Utc::now();
        self.transition(rec, || vec![self.state_record(rec, Some("failed"))], true)
            .await?;
        self.count_end(rec, ActionEnd::Failed);
        self.notifier.notify(Notice::ActionFailed {
            action_key: rec.key.clone(),
            connector: rec.connector.clone(),
            operation: rec.operation.as_str().to_string(),
            subject: rec.subject.clone(),
            error: reason.clone(),
            alert_id: match &rec.origin {
                Origin::Alert { alert_id, .. } => Some(alert_id.clone()),
                Origin::Manual { .. } => None,
            },
        });
        self.metrics
            .dead_letter(crate::telemetry::DeadLetterStage::Action);
        warn!(error = %reason, attempts = rec.attempts, "action failed; dead-lettered");
        let payload = serde_json::to_vec(rec).unwrap_or_default();
        let origin = [
            ("deprovd-action-key", rec.key.as_str()),
            ("deprovd-connector", rec.connector.as_str()),
        ];
        if let Err(e) = self.dead_letters.send(&payload, &reason, &origin).await {
            warn!(error = %e, "could not dead-letter the failed action (it stays `failed` in the ledger)");
        }
        Ok(())
    }

    /// The subject is in a protected group: the action is `skipped` without calling the target,
    /// audited (state change and guard record) and counted.
    pub(super) async fn skip_protected_group(
        &self,
        rec: &mut ActionRecord,
        group: &str,
        via: &str,
    ) -> Result<(), crate::ledger::StoreError> {
        let note = format!(
            "protected group: member of `{group}` (per connector `{via}`); guards never act on it"
        );
        let detail = serde_json::json!({ "group": group, "resolved_by": via });
        self.skip_guarded(rec, note, crate::guard::GuardHit::ProtectedGroup, detail)
            .await?;
        info!(
            group,
            via, "subject is in a protected group; action skipped"
        );
        Ok(())
    }

    /// The connector resolved the subject to an account one of whose names is protected: skipped
    /// without the destructive call, audited and counted like the planning guard's skip.
    pub(super) async fn skip_protected_account(
        &self,
        rec: &mut ActionRecord,
        identifier: &str,
    ) -> Result<(), crate::ledger::StoreError> {
        let note = format!(
            "protected subject: resolves on `{}` to the protected account `{identifier}`; guards never act on it",
            rec.connector
        );
        let detail = serde_json::json!({ "resolved_to": identifier, "resolved_by": rec.connector });
        self.skip_guarded(rec, note, crate::guard::GuardHit::Protected, detail)
            .await?;
        info!(
            resolved_to = identifier,
            "subject resolves to a protected account; action skipped"
        );
        Ok(())
    }

    /// Record a guard's skip: state, audit (state change and guard record, with `detail`), metrics.
    async fn skip_guarded(
        &self,
        rec: &mut ActionRecord,
        note: String,
        hit: crate::guard::GuardHit,
        detail: serde_json::Value,
    ) -> Result<(), crate::ledger::StoreError> {
        rec.state = ActionState::Skipped;
        rec.next_attempt_at = None;
        rec.state_reason = Some(hit.state_reason());
        rec.note = Some(note);
        rec.updated_at = Utc::now();
        let mut body = serde_json::json!({
            "guard": hit.as_str(),
            "state": rec.state,
            "note": rec.note,
            "connector": rec.connector,
            "operation": rec.operation,
            "rule": rec.rule,
        });
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), detail) {
            body.extend(extra);
        }
        let rec = &*rec;
        let records = || {
            let mut g = AuditDraft::new(AuditKind::Guard, Actor::system("executor"), body.clone());
            g.subject = Some(rec.subject.clone());
            g.action_key = Some(rec.key.clone());
            stamp_origin(&mut g, rec);
            vec![self.state_record(rec, Some(hit.as_str())), g]
        };
        self.transition(rec, records, true).await?;
        self.metrics.guard_block(hit.as_str());
        self.count_end(rec, ActionEnd::Skipped);
        Ok(())
    }

    /// The action `original` was undone by the reversal `by`: it becomes `restored`.
    pub(super) async fn mark_restored(
        &self,
        original: &str,
        by: &str,
    ) -> Result<(), crate::ledger::StoreError> {
        let Some(mut orig) = self.actions.get_action(original).await? else {
            warn!(
                original,
                "reversal succeeded but the action it undoes is gone"
            );
            return Ok(());
        };
        if orig.state == ActionState::Restored {
            return Ok(());
        }
        orig.state = ActionState::Restored;
        orig.next_attempt_at = None;
        orig.note = Some(format!("restored by {by}"));
        orig.updated_at = Utc::now();
        self.transition(&orig, || vec![self.state_record(&orig, None)], false)
            .await?;
        self.count_end(&orig, ActionEnd::Restored);
        Ok(())
    }

    /// Write `rec`'s new state with its audit `records` (built when needed) and, with `release`,
    /// give up this executor's claim on it — one store step
    /// ([`record_transition`](crate::ledger::ActionStore::record_transition)). Should that fail, the
    /// state is written alone (its error is returned: the action is retried after the lease) and
    /// the records appended after it, retried a few times, then logged: the ledger is the source of
    /// truth, and the connector call has happened either way.
    pub(super) async fn transition(
        &self,
        rec: &ActionRecord,
        records: impl Fn() -> Vec<AuditDraft>,
        release: bool,
    ) -> Result<(), crate::ledger::StoreError> {
        let owner = release.then_some(self.owner.as_str());
        match self.actions.record_transition(rec, records(), owner).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                debug!(action_key = %rec.key, error = %e, "combined state and audit write failed; writing them apart");
            }
        }
        self.actions.put_action(rec).await?;
        let drafts = records();
        if !drafts.is_empty() {
            let mut attempts = crate::retry::Attempts::new(crate::retry::AUDIT_WRITE);
            for attempt in 1..=3 {
                match self.audit.append_audit(drafts.clone()).await {
                    Ok(_) => break,
                    Err(e) if attempt == 3 => {
                        error!(action_key = %rec.key, state = rec.state.as_str(), error = %e,
                            "could not write the action's state change to the audit trail");
                    }
                    Err(_) => tokio::time::sleep(attempts.next_wait()).await,
                }
            }
        }
        if release {
            self.release(&rec.key).await;
        }
        Ok(())
    }

    /// The `action_state` record of `rec`'s new state (`outcome`: the connector's answer).
    pub(super) fn state_record(&self, rec: &ActionRecord, outcome: Option<&str>) -> AuditDraft {
        let mut d = AuditDraft::new(
            AuditKind::ActionState,
            Actor::system("executor"),
            serde_json::json!({
                "state": rec.state,
                "outcome": outcome,
                "connector": rec.connector,
                "operation": rec.operation,
                "attempts": rec.attempts,
                "next_attempt_at": rec.next_attempt_at,
                "last_error": rec.last_error,
                "response": rec.response,
                "note": rec.note,
                "executor": self.owner,
            }),
        );
        d.subject = Some(rec.subject.clone());
        d.action_key = Some(rec.key.clone());
        stamp_origin(&mut d, rec);
        if !rec.policy_digest.is_empty() {
            d.policy_digest = Some(rec.policy_digest.clone());
        }
        d
    }

    pub(super) fn count_end(&self, rec: &ActionRecord, end: ActionEnd) {
        self.metrics
            .action_end(&rec.connector, rec.operation.as_str(), end);
    }

    pub(super) fn observe_containment(&self, rec: &ActionRecord) {
        let now = Utc::now();
        let secs =
            |from: chrono::DateTime<Utc>| (now - from).num_microseconds().unwrap_or(0) as f64 / 1e6;
        self.metrics.containment(
            crate::telemetry::ContainmentFrom::Ingest,
            secs(rec.created_at).max(0.0),
        );
        if let Origin::Alert { alert_time, .. } = &rec.origin {
            self.metrics.containment(
                crate::telemetry::ContainmentFrom::AlertTime,
                secs(*alert_time).max(0.0),
            );
        }
    }
}

/// What to tell people about a succeeded action: a reversal is `Restored`, a containment operation
/// is `LockoutDone`, anything else (`notify` itself) is not news. The lockout id is the manual
/// request id: a lockout's actions carry it, and so do the reversals of a lockout restore (a restore
/// of one action carries that action's key instead, which is no lockout id).
pub(super) fn success_notice(rec: &ActionRecord) -> Option<Notice> {
    use crate::action::Operation as Op;
    let request_id = match &rec.origin {
        Origin::Manual { request_id, .. } => Some(request_id.clone()),
        Origin::Alert { .. } => None,
    };
    let (action_key, connector, operation, subject) = (
        rec.key.clone(),
        rec.connector.clone(),
        rec.operation.as_str().to_string(),
        rec.subject.clone(),
    );
    if let Some(original) = &rec.reverses {
        return Some(Notice::Restored {
            lockout_id: request_id.filter(|id| id != original),
            action_key,
            connector,
            operation,
            subject,
        });
    }
    match rec.operation {
        Op::DisableAccount
        | Op::RevokeSessions
        | Op::RevokeTokens
        | Op::RemoveGroupMemberships
        | Op::ResetCredentials
        | Op::ContainHost => Some(Notice::LockoutDone {
            lockout_id: request_id,
            action_key,
            connector,
            operation,
            subject,
        }),
        Op::EnableAccount | Op::RestoreGroupMemberships | Op::LiftContainment | Op::Notify => None,
    }
}

/// Say on whose behalf the executor acted: the alert, or — for a manual action — the responder who
/// asked and the request (the lockout or restore id), so the trail answers "who locked this
/// account" from the execution record itself.
fn stamp_origin(d: &mut AuditDraft, rec: &ActionRecord) {
    match &rec.origin {
        Origin::Alert { alert_id, .. } => d.alert_id = Some(alert_id.clone()),
        Origin::Manual { request_id, actor } => {
            d.detail["requested_by"] = actor.clone().into();
            d.detail["request_id"] = request_id.clone().into();
        }
    }
}
