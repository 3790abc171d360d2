//! Running one claimed action: the connector call, the guards right before it, and the outcome
//! turned into the next ledger state.

use chrono::DateTime;

use super::effects::success_notice;
use super::*;
use crate::telemetry::WaitReason;

impl Executor {
    /// Claim (unless a claim round already did), run and record one action (`rec`: as read with
    /// its claim, if it was); returns when it is due again if it was rescheduled. Every failure
    /// path leaves the ledger consistent, and the claim released (the outcome's write releases it).
    pub(super) async fn run_one(
        &self,
        key: &str,
        claimed: bool,
        rec: Option<ActionRecord>,
    ) -> Option<DateTime<Utc>> {
        if !claimed {
            match self
                .actions
                .claim(key, &self.owner, self.cfg.claim_ttl)
                .await
            {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    warn!(action_key = key, error = %e, "cannot claim action");
                    return None;
                }
            }
        }
        match self.run_claimed(key, rec).await {
            Ok(due_again) => due_again,
            Err(e) => {
                warn!(action_key = key, error = %e, "action left for retry after a store error");
                self.release(key).await;
                None
            }
        }
    }

    /// Give up the claim on `key` without writing the action.
    pub(super) async fn release(&self, key: &str) {
        if let Err(e) = self.actions.release(key, &self.owner).await {
            debug!(action_key = key, error = %e, "claim release failed; it expires by itself");
        }
    }

    async fn run_claimed(
        &self,
        key: &str,
        rec: Option<ActionRecord>,
    ) -> Result<Option<DateTime<Utc>>, crate::ledger::StoreError> {
        let rec = match rec {
            Some(rec) => Some(rec),
            None => self.actions.get_action(key).await?,
        };
        let Some(mut rec) =
            rec.filter(|r| matches!(r.state, ActionState::Planned | ActionState::Running))
        else {
            self.release(key).await;
            return Ok(None);
        };
        let span = info_span!("action", action_key = %rec.key, connector = %rec.connector,
            operation = %rec.operation, alert_id = tracing::field::Empty);
        if let Origin::Alert { alert_id, .. } = &rec.origin {
            span.record("alert_id", alert_id.as_str());
        }
        async {
            let lane = self.lane_of.get(&rec.connector).map(|&i| &self.lanes[i]);
            let (Some(connector), Some(lane)) = (self.connectors.get(&rec.connector), lane) else {
                let reason = format!("connector `{}` is not configured", rec.connector);
                return self.finish_failed(&mut rec, reason).await.map(|()| None);
            };
            let now = Utc::now();
            // Time due but not started (a full lane, or the wait for the next claim round); a
            // `running` action whose lease ended was not waiting in the queue.
            if rec.state == ActionState::Planned
                && let Some(due) = rec.next_attempt_at
            {
                let waited = (now - due).num_milliseconds().max(0) as f64 / 1e3;
                self.metrics.action_wait(&rec.connector, WaitReason::Queued, waited);
            }
            rec.state = ActionState::Running;
            rec.attempts += 1;
            rec.next_attempt_at = Some(now + self.cfg.claim_ttl);
            rec.updated_at = now;
            // The lease, in the ledger only: the attempt's outcome is its audit record.
            self.transition(&rec, Vec::new, false).await?;

            let request = OperationRequest {
                operation: rec.operation,
                subject: rec.subject.clone(),
                idempotency_key: rec.key.clone(),
                pre_state: rec.pre_state.clone(),
                context: request_context(&rec),
            };
            let destructive = rec.operation.is_destructive() && rec.reverses.is_none();
            // Protected subjects, after resolution: the account the target resolves the subject
            // to must not be protected under any of its names. Reversals are never blocked.
            let mut unresolved = None;
            if let Some(p) = self.protected.as_ref().filter(|_| destructive) {
                match connector.resolve_account(&rec.subject).await {
                    Resolution::Account(ids) => {
                        if let Some(hit) = p.first_match(&ids) {
                            let hit = hit.to_string();
                            return self.skip_protected_account(&mut rec, &hit).await.map(|()| None);
                        }
                    }
                    Resolution::Unavailable(reason) => unresolved = Some(reason),
                    Resolution::NotFound | Resolution::Unsupported => {}
                }
            }
            // Protected groups: asked here, not at planning, because membership lives in the
            // targets. Reversals are never blocked (they give access back).
            let verdict = match (&self.group_guard, unresolved) {
                (_, Some(reason)) => Some(Verdict::Unknown(format!(
                    "the account could not be resolved for the protected-subject check: {reason}"
                ))),
                (Some(g), None) if destructive => Some(g.check(&rec.subject).await),
                _ => None,
            };
            let result = match verdict {
                Some(Verdict::Protected { group, connector: via }) => {
                    return self.skip_protected_group(&mut rec, &group, &via).await.map(|()| None);
                }
                Some(Verdict::Unknown(reason)) => crate::connectors::OperationResult::new(
                    Outcome::Retry {
                        after: None,
                        reason: format!(
                            "not called: the protected-subject check could not complete ({reason})"
                        ),
                    },
                    "protected-subject check incomplete",
                ),
                Some(Verdict::Clear) | None => {
                    let (result, paced) =
                        crate::connectors::measuring_rate_wait(connector.execute(&request)).await;
                    if !paced.is_zero() {
                        self.metrics.action_wait(
                            &rec.connector,
                            WaitReason::RateBudget,
                            paced.as_secs_f64(),
                        );
                    }
                    result
                }
            };
            self.metrics.attempt(rec.connector.as_str(), result.outcome.as_str());
            rec.response = Some(result.summary.clone());
            rec.pre_state = merge_pre_state(rec.pre_state.take(), result.pre_state.clone());
            rec.updated_at = Utc::now();
            match result.outcome {
                Outcome::Done | Outcome::AlreadyDone => {
                    // A reversal marks what it undid first: if this process dies before its own
                    // record is written, the lease makes it run again (`already_done`), so the
                    // original is never left `succeeded` after its reversal took effect.
                    if let Some(original) = rec.reverses.clone() {
                        self.mark_restored(&original, &rec.key).await?;
                    }
                    rec.state = ActionState::Succeeded;
                    rec.next_attempt_at = None;
                    rec.last_error = None;
                    if result.outcome == Outcome::AlreadyDone {
                        rec.note = Some("already in the desired state".into());
                    }
                    let outcome = result.outcome.as_str();
                    self.transition(&rec, || vec![self.state_record(&rec, Some(outcome))], true)
                        .await?;
                    self.observe_containment(&rec);
                    // Containment signals for forward actions; of the reversals only re-enabling
                    // an account has one (RISC account-enabled).
                    if let Some(s) = self.signals.get()
                        && (rec.reverses.is_none() || rec.operation == Operation::EnableAccount)
                    {
                        s.contained(crate::ssf::transmit::Contained {
                            subject: rec.subject.clone(),
                            operation: rec.operation,
                            action_key: rec.key.clone(),
                            manual: matches!(rec.origin, Origin::Manual { .. }),
                            reason: rec.reason.clone(),
                        });
                    }
                    self.count_end(&rec, ActionEnd::Succeeded);
                    if let Some(notice) = success_notice(&rec) {
                        self.notifier.notify(notice);
                    }
                    info!(outcome = result.outcome.as_str(), attempts = rec.attempts, "action succeeded");
                }
                Outcome::NotFound => {
                    rec.state = ActionState::Skipped;
                    rec.next_attempt_at = None;
                    rec.note = Some("subject not found on this target".into());
                    let outcome = result.outcome.as_str();
                    self.transition(&rec, || vec![self.state_record(&rec, Some(outcome))], true)
                        .await?;
                    self.count_end(&rec, ActionEnd::NotFound);
                    info!("subject not found on target; nothing to do");
                }
                Outcome::Retry { after, reason } => {
                    if rec.attempts >= lane.max_attempts {
                        let reason = format!(
                            "gave up after {} attempts; last error: {reason}",
                            rec.attempts
                        );
                        return self.finish_failed(&mut rec, reason).await.map(|()| None);
                    }
                    let delay = self.backoff.delay(rec.attempts, after, &mut rand::rng());
                    self.metrics.action_wait(
                        &rec.connector,
                        WaitReason::RetryBackoff,
                        delay.as_secs_f64(),
                    );
                    rec.state = ActionState::Planned;
                    rec.last_error = Some(reason.clone());
                    rec.next_attempt_at = Some(
                        Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                    );
                    self.transition(&rec, || vec![self.state_record(&rec, Some("retry"))], true)
                        .await?;
                    info!(attempts = rec.attempts, delay_ms = delay.as_millis() as u64, error = %reason,
                        "action will be retried");
                    return Ok(rec.next_attempt_at);
                }
                Outcome::Failed { reason } => {
                    return self.finish_failed(&mut rec, reason).await.map(|()| None);
                }
            }
            Ok(None)
        }
        .instrument(span)
        .await
    }
}

/// Combine the pre-state recorded by earlier attempts with this attempt's. The first value of a field
/// wins (it is the state before *any* change), except lists, which are unioned: a group removal that
/// failed halfway and was retried must remember the groups removed by both attempts.
pub(super) fn merge_pre_state(
    old: Option<serde_json::Value>,
    new: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    use serde_json::Value;
    match (old, new) {
        (None, n) => n,
        (o, None) => o,
        (Some(Value::Object(mut o)), Some(Value::Object(n))) => {
            for (k, v) in n {
                match (o.get_mut(&k), v) {
                    (Some(Value::Array(existing)), Value::Array(more)) => {
                        for item in more {
                            if !existing.contains(&item) {
                                existing.push(item);
                            }
                        }
                    }
                    (Some(_), _) => {}
                    (None, v) => {
                        o.insert(k, v);
                    }
                }
            }
            Some(Value::Object(o))
        }
        (o, _) => o,
    }
}

/// Values connector templates may use besides the subject: never secrets.
fn request_context(rec: &ActionRecord) -> BTreeMap<String, serde_json::Value> {
    let mut ctx = BTreeMap::new();
    ctx.insert("reason".into(), rec.reason.clone().into());
    ctx.insert("rule".into(), rec.rule.clone().into());
    ctx.insert("action_key".into(), rec.key.clone().into());
    ctx.insert("operation".into(), rec.operation.as_str().into());
    match &rec.origin {
        Origin::Alert { alert_id, .. } => {
            ctx.insert("alert_id".into(), alert_id.clone().into());
        }
        Origin::Manual { request_id, actor } => {
            ctx.insert("request_id".into(), request_id.clone().into());
            ctx.insert("actor".into(), actor.clone().into());
        }
    }
    ctx
}
