//! The durable part: guard with the store (breaker, approvals), insert into the ledger, hand off to
//! the executor, append the alert's audit batch.

use super::audit::audit_batch;
use std::collections::HashMap;

use super::*;

impl Pipeline {
    /// Write planned actions to the ledger and the alert's audit batch, naming who sent the alert in
    /// the audit trail; hand the ones that can run now to the executor.
    pub(crate) async fn record_as(
        &self,
        planned: &Planned,
        actor: Actor,
    ) -> Result<Vec<RecordedAction>, PipelineError> {
        let out = self
            .record_actions(&planned.actions, &planned.alert.id, self.coalesce_window)
            .await?;
        self.store
            .append_audit(audit_batch(planned, &out, actor))
            .await
            .map_err(|e| PipelineError::Unavailable(format!("audit trail: {e}")))?;
        Ok(out)
    }

    /// Guard and record actions that did not come from a policy — manual lockouts and reversals —
    /// with the same ledger guarantees as alert-caused ones: each is inserted under its idempotency
    /// key (a retried request is a `duplicate`), live actions for the same (subject, connector,
    /// operation) absorb it (`coalesced`, linked to `request_id`), and the executor is woken. A held
    /// action never absorbs a runnable manual one: the lockout is recorded and runs, and the held
    /// action is cancelled as superseded (a responder's lockout must not wait for an approval).
    ///
    /// `coalesce = false` is for reversals: they neither take a coalesce slot (a later lockout's
    /// restore must not be absorbed by an earlier, finished reversal) nor are meant to be absorbed.
    pub(crate) async fn record_manual(
        &self,
        mut actions: Vec<ActionRecord>,
        request_id: &str,
        coalesce: bool,
    ) -> Result<Vec<RecordedAction>, PipelineError> {
        let mut hits: HashMap<String, GuardHit> = HashMap::new();
        for a in &mut actions {
            if let Some(hit) = self.decider.guards.apply(a) {
                self.metrics.guard_block(hit.as_str());
                hits.insert(a.key.clone(), hit);
            }
        }
        let window = if coalesce {
            self.coalesce_window
        } else {
            Duration::ZERO
        };
        let out = self.record_actions(&actions, request_id, window).await?;
        // Held manual actions (a lockout that asked for a second person) and refused ones (a
        // protected subject, dry run) are guard events; alert batches carry their own. Recorded
        // once, when the action is new: a replayed request changes nothing and records nothing.
        let held: Vec<AuditDraft> = out
            .iter()
            .filter(|r| r.disposition == Disposition::New)
            .filter_map(|r| {
                let event = match hits.get(&r.key) {
                    Some(hit) => hit.as_str(),
                    None if r.state == ActionState::AwaitingApproval => "held_for_approval",
                    None => return None,
                };
                let actor = actions
                    .iter()
                    .find(|a| a.key == r.key)
                    .map_or_else(|| "manual".to_string(), ActionRecord::requester);
                let mut g = AuditDraft::new(
                    AuditKind::Guard,
                    Actor::system(&actor),
                    serde_json::json!({
                        "event": event,
                        "guard": hits.get(&r.key).map(|h| h.as_str()),
                        "state": r.state,
                        "note": r.note,
                        "connector": r.connector,
                        "operation": r.operation,
                        "request_id": request_id,
                        "requested_by": actor,
                    }),
                );
                g.subject = Some(r.subject.clone());
                g.action_key = Some(r.key.clone());
                Some(g)
            })
            .collect();
        if !held.is_empty() {
            self.store
                .append_audit(held)
                .await
                .map_err(|e| PipelineError::Unavailable(format!("audit trail: {e}")))?;
        }
        Ok(out)
    }

    /// Apply the breaker and the approval bookkeeping to one action about to be recorded: count its
    /// subject (runnable, non-reversal actions only), hold it when automatic and a scope is open,
    /// and stamp every held action with its requester and approval deadline. Borrowed unless changed.
    async fn hold<'a>(
        &self,
        action: &'a ActionRecord,
    ) -> Result<Cow<'a, ActionRecord>, PipelineError> {
        let mut a = Cow::Borrowed(action);
        if let Some(breaker) = &self.approvals.breaker
            && crate::guard::breaker_counts(action)
        {
            let open = breaker
                .admit(action)
                .await
                .map_err(|e| PipelineError::Unavailable(format!("breaker: {e}")))?;
            if !open.is_empty() && action.is_automatic() {
                let m = a.to_mut();
                m.state = ActionState::AwaitingApproval;
                m.next_attempt_at = None;
                m.note = Some(crate::guard::breaker_note(&open));
                m.state_reason = Some(StateReason::Breaker);
                self.metrics.guard_block(GuardHit::Breaker.as_str());
            }
        }
        if a.state == ActionState::AwaitingApproval && a.expires_at.is_none() {
            let m = a.to_mut();
            m.requested_by = Some(m.requester());
            let ttl = chrono::Duration::from_std(self.approvals.approval_ttl)
                .unwrap_or(chrono::Duration::days(1));
            m.expires_at = Some(Utc::now() + ttl);
            if m.note.is_none() {
                m.note = Some("approval required by policy".into());
            }
            if m.state_reason.is_none() {
                m.state_reason = Some(StateReason::PolicyApproval);
            }
        }
        Ok(a)
    }

    /// Insert each action (linking `link` when coalesced); wake the executor if any can run now.
    async fn record_actions(
        &self,
        actions: &[ActionRecord],
        link: &str,
        window: Duration,
    ) -> Result<Vec<RecordedAction>, PipelineError> {
        let mut out = Vec::with_capacity(actions.len());
        for a in actions {
            let a = self.hold(a).await?;
            let a = a.as_ref();
            let inserted = self
                .store
                .insert_action(a, window, Some(link))
                .await
                .map_err(|e| PipelineError::Unavailable(e.to_string()))?;
            let superseded = match &inserted {
                Inserted::Superseded(held) => Some(held.clone()),
                _ => None,
            };
            let (disposition, coalesced_into) = match inserted {
                Inserted::New | Inserted::Superseded(_) => {
                    if a.state == ActionState::Planned
                        && let Some(h) = &self.approvals.handoff
                    {
                        h.offer(a);
                    }
                    if a.state == ActionState::AwaitingApproval {
                        self.approvals.notifier.notify(Notice::ApprovalNeeded {
                            approval_id: a.key.clone(),
                            connector: a.connector.clone(),
                            operation: a.operation.as_str().to_string(),
                            subject: a.subject.clone(),
                            reason: a.note.clone().unwrap_or_else(|| a.reason.clone()),
                            requested_by: a.requester(),
                            expires_at: a.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        });
                    }
                    if matches!(a.state, ActionState::Skipped) {
                        let end = if a.state_reason == Some(StateReason::DryRun) {
                            ActionEnd::DryRun
                        } else {
                            ActionEnd::Skipped
                        };
                        self.metrics
                            .action_end(&a.connector, a.operation.as_str(), end);
                    }
                    (Disposition::New, None)
                }
                Inserted::Duplicate => (Disposition::Duplicate, None),
                Inserted::Coalesced(into) => {
                    self.metrics.action_end(
                        a.connector.as_str(),
                        a.operation.as_str(),
                        crate::telemetry::ActionEnd::Coalesced,
                    );
                    (Disposition::Coalesced, Some(into))
                }
            };
            if let Some(held) = &superseded {
                // The new action is recorded and due whatever happens here: a failure only leaves
                // the held one to its approver or its expiry.
                if let Err(e) = crate::approval::supersede(&self.approvals, held, a).await {
                    warn!(action_key = %a.key, held = %held, error = %e,
                        "could not cancel the held action this one supersedes");
                }
            }
            debug!(origin = %link, action_key = %a.key, connector = %a.connector, disposition = disposition.as_str(), "action recorded");
            out.push(RecordedAction {
                key: a.key.clone(),
                connector: a.connector.clone(),
                operation: a.operation,
                subject: a.subject.clone(),
                state: a.state,
                disposition,
                coalesced_into,
                superseded,
                note: a.note.clone(),
            });
        }
        Ok(out)
    }
}
