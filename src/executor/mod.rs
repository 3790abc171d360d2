//! The executor drains the ledger: it claims due actions, runs them through their connector with a
//! per-connector concurrency limit, records the outcome, and schedules retries.
//!
//! Crash safety comes from the ledger, not from memory: an action is `planned` in the store before any
//! call; while it runs it is `running` with `next_attempt_at` set to the end of its claim (a lease), so
//! if this process dies mid-call the action becomes due again once the lease ends and another executor
//! (or this one after restart) finishes it. Connectors read state before writing, so a repeated call
//! after such a crash is `already_done`, not a second side effect.
//!
//! Every state change is also an `action_state` record in the audit trail, written right after the
//! ledger update. The ledger is the source of truth, so an audit append that still fails after a few
//! quick retries is logged at error level rather than undoing the change (the connector call has
//! happened either way).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::config::Problem;
use crate::connectors::{ConnectorSet, Operation, OperationRequest, Outcome, Resolution};
use crate::deadletter::DeadLetterSink;
use crate::guard::ProtectedSubjects;
use crate::guard::groups::{GroupGuard, Verdict};
use crate::ledger::{ActionRecord, ActionState, Origin, StateStore};
use crate::notify::{Notice, Notifier};
use crate::retry::{Backoff, RetryConfig};
use crate::telemetry::{ActionEnd, Metrics};

/// `[executor]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// Run the executor in this process. `false` makes an ingest-only replica: it records actions and
    /// leaves them to executor replicas sharing the same Redis ledger.
    pub enabled: bool,
    /// How long a claim (and the `running` lease) lasts; must exceed the slowest connector call.
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// How often to look for due actions when nothing wakes the executor (other replicas' work).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Actions fetched per scan of the due index.
    pub batch: usize,
    pub retry: RetryConfig,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            claim_ttl: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            batch: 256,
            retry: RetryConfig::default(),
        }
    }
}

impl ExecutorConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if self.claim_ttl < Duration::from_secs(1) {
            problems.push(Problem::new(
                format!("{path}.claim_ttl"),
                "must be at least 1s (it bounds a connector call)",
            ));
        }
        if self.poll_interval.is_zero() {
            problems.push(Problem::new(
                format!("{path}.poll_interval"),
                "must be greater than zero",
            ));
        }
        if self.batch == 0 {
            problems.push(Problem::new(format!("{path}.batch"), "must be at least 1"));
        }
        self.retry.validate(&format!("{path}.retry"), problems);
    }
}

/// Handed-off actions waiting to start; beyond this the pipeline falls back to waking a scan.
const HANDOFF_CAPACITY: usize = 4096;

/// The pipeline's side of the direct handoff (see [`Executor::handoff`]).
#[derive(Clone)]
pub struct Handoff {
    tx: mpsc::Sender<String>,
    wake: Arc<Notify>,
}

impl Handoff {
    /// Start `key` now. Never blocks ingestion: when the queue is full the executor is woken to scan
    /// the due index instead, where the action already is.
    pub fn offer(&self, key: String) {
        if self.tx.try_send(key).is_err() {
            self.wake.notify_one();
        }
    }
}

/// Per-connector limits: concurrency and retry budget.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorLimits {
    pub concurrency: usize,
    pub max_attempts: u32,
}

struct Lane {
    permits: Arc<Semaphore>,
    max_attempts: u32,
}

/// Runs ledger actions through connectors. Cheap to share (`Arc`).
pub struct Executor {
    store: Arc<dyn StateStore>,
    connectors: ConnectorSet,
    lanes: HashMap<String, Lane>,
    metrics: Arc<Metrics>,
    dead_letters: Arc<dyn DeadLetterSink>,
    wake: Arc<Notify>,
    handoff_tx: mpsc::Sender<String>,
    handoff_rx: Mutex<Option<mpsc::Receiver<String>>>,
    /// Unique per process, so a claim names its holder.
    owner: String,
    cfg: ExecutorConfig,
    backoff: Backoff,
    /// Keys this process is working on, so a rescan never starts a second task for one action.
    inflight: Mutex<HashSet<String>>,
    /// `[guards] protected_groups`: asked before every destructive operation (see
    /// [`crate::protected_groups`]); `None` when no group is protected.
    group_guard: Option<Arc<GroupGuard>>,
    /// `[guards] protected`, checked again against the account the connector resolves the subject
    /// to, right before every destructive operation; `None` (or empty) when nothing is protected.
    protected: Option<Arc<ProtectedSubjects>>,
    /// Tells people about failed actions, lockouts and restores; never waits.
    notifier: Notifier,
    /// Shared Signals transmitter's queue: told about each successful containment.
    signals: std::sync::OnceLock<crate::ssf::transmit::SignalEmitter>,
}

impl Executor {
    pub fn new(
        store: Arc<dyn StateStore>,
        connectors: ConnectorSet,
        limits: &BTreeMap<String, ConnectorLimits>,
        metrics: Arc<Metrics>,
        dead_letters: Arc<dyn DeadLetterSink>,
        cfg: ExecutorConfig,
        notifier: Notifier,
    ) -> Self {
        let lanes = connectors
            .keys()
            .map(|name| {
                let l = limits.get(name).copied().unwrap_or(ConnectorLimits {
                    concurrency: 8,
                    max_attempts: cfg.retry.max_attempts,
                });
                (
                    name.clone(),
                    Lane {
                        permits: Arc::new(Semaphore::new(l.concurrency.max(1))),
                        max_attempts: l.max_attempts.max(1),
                    },
                )
            })
            .collect();
        let (handoff_tx, handoff_rx) = mpsc::channel(HANDOFF_CAPACITY);
        Self {
            handoff_tx,
            handoff_rx: Mutex::new(Some(handoff_rx)),
            store,
            connectors,
            lanes,
            metrics,
            dead_letters,
            wake: Arc::new(Notify::new()),
            owner: format!("executor-{}", uuid::Uuid::new_v4()),
            backoff: cfg.retry.backoff(),
            cfg,
            inflight: Mutex::new(HashSet::new()),
            group_guard: None,
            protected: None,
            notifier,
            signals: std::sync::OnceLock::new(),
        }
    }

    /// Check `[guards] protected_groups` through `guard` before every destructive operation.
    pub fn with_group_guard(mut self, guard: Option<Arc<GroupGuard>>) -> Self {
        self.group_guard = guard;
        self
    }

    /// Check the identifiers a connector resolves an action's subject to (its LDAP entry's `uid`,
    /// `mail`, `sAMAccountName`, `userPrincipalName`; a spec lookup's record; the IAM user name)
    /// against `protected` before every destructive operation. The planning guard compares the
    /// subject as written; this compares the account the target will actually touch, so no
    /// spelling the target folds differently can reach a protected account. Fails closed: a
    /// target that cannot answer now makes the action retry later, never act.
    pub fn with_protected_subjects(mut self, protected: Arc<ProtectedSubjects>) -> Self {
        self.protected = (!protected.is_empty()).then_some(protected);
        self
    }

    /// Tell `emitter` about every successful containment (disable, revoke sessions), so deprovd's
    /// Shared Signals transmitter can push RISC/CAEP events downstream. Queue-only: never blocks.
    pub fn signal_containment_to(&self, emitter: crate::ssf::transmit::SignalEmitter) {
        let _ = self.signals.set(emitter);
    }

    /// Handle the pipeline uses to pass each newly recorded runnable action straight to this executor,
    /// so the first connector request leaves without a poll or a scan of the due index.
    pub fn handoff(&self) -> Handoff {
        Handoff {
            tx: self.handoff_tx.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Start `key` unless this process already works on it.
    fn start(self: &Arc<Self>, key: String, tasks: &mut JoinSet<()>) -> bool {
        if !self
            .inflight
            .lock()
            .expect("not poisoned")
            .insert(key.clone())
        {
            return false;
        }
        let this = self.clone();
        tasks.spawn(async move {
            this.run_one(&key).await;
            this.inflight.lock().expect("not poisoned").remove(&key);
        });
        true
    }

    /// Run handed-off actions at once and scan the due index (retries, other replicas' work, anything
    /// the handoff missed) until `shutdown` turns true; then wait for in-flight calls to finish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut store_trouble = crate::retry::Attempts::new(crate::retry::RECONNECT);
        let mut handoffs = self
            .handoff_rx
            .lock()
            .expect("not poisoned")
            .take()
            .expect("Executor::run is called once");
        // The pending gauge costs a store round trip: refresh it at most once a second, not per wake.
        let mut gauge_refreshed = tokio::time::Instant::now() - Duration::from_secs(1);
        let mut next_scan = tokio::time::Instant::now();
        info!(owner = %self.owner, "executor started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            if tokio::time::Instant::now() >= next_scan {
                let mut wait = self.cfg.poll_interval;
                match self.store.due_actions(Utc::now(), self.cfg.batch).await {
                    Ok(keys) => {
                        store_trouble.reset();
                        let mut started = 0usize;
                        for key in keys {
                            started += usize::from(self.start(key, &mut tasks));
                        }
                        if let Ok(Some(next)) = self.store.next_due_at().await {
                            let until = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                            wait = wait.min(until);
                        }
                        if started == 0 {
                            // Everything due is already ours and in flight: don't spin on it.
                            wait = wait.max(Duration::from_millis(10));
                        }
                        if gauge_refreshed.elapsed() >= Duration::from_secs(1) {
                            gauge_refreshed = tokio::time::Instant::now();
                            if let Ok(n) = self.store.pending_count().await {
                                self.metrics.ledger_pending.set(n as i64);
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "executor cannot read the due index; retrying");
                        wait = store_trouble.next_wait();
                    }
                }
                next_scan = tokio::time::Instant::now() + wait;
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                Some(key) = handoffs.recv() => {
                    self.start(key, &mut tasks);
                }
                _ = self.wake.notified() => next_scan = tokio::time::Instant::now(),
                _ = tokio::time::sleep_until(next_scan) => {}
                _ = shutdown.changed() => {}
            }
        }
        info!(
            inflight = tasks.len(),
            "executor stopping; waiting for in-flight calls"
        );
        while tasks.join_next().await.is_some() {}
    }

    /// Claim, run and record one action. Every failure path leaves the ledger consistent.
    async fn run_one(&self, key: &str) {
        let claimed = match self.store.claim(key, &self.owner, self.cfg.claim_ttl).await {
            Ok(c) => c,
            Err(e) => {
                warn!(action_key = key, error = %e, "cannot claim action");
                return;
            }
        };
        if !claimed {
            return;
        }
        if let Err(e) = self.run_claimed(key).await {
            warn!(action_key = key, error = %e, "action left for retry after a store error");
        }
        if let Err(e) = self.store.release(key, &self.owner).await {
            debug!(action_key = key, error = %e, "claim release failed; it expires by itself");
        }
    }

    async fn run_claimed(&self, key: &str) -> Result<(), crate::ledger::StoreError> {
        let Some(mut rec) = self.store.get_action(key).await? else {
            return Ok(());
        };
        if !matches!(rec.state, ActionState::Planned | ActionState::Running) {
            return Ok(());
        }
        let span = info_span!("action", action_key = %rec.key, connector = %rec.connector,
            operation = %rec.operation, alert_id = tracing::field::Empty);
        if let Origin::Alert { alert_id, .. } = &rec.origin {
            span.record("alert_id", alert_id.as_str());
        }
        async {
            let (Some(connector), Some(lane)) =
                (self.connectors.get(&rec.connector), self.lanes.get(&rec.connector))
            else {
                let reason = format!("connector `{}` is not configured", rec.connector);
                return self.finish_failed(&mut rec, reason).await;
            };
            let _permit = lane.permits.acquire().await.expect("semaphore never closed");
            let now = Utc::now();
            rec.state = ActionState::Running;
            rec.attempts += 1;
            rec.next_attempt_at = Some(now + self.cfg.claim_ttl);
            rec.updated_at = now;
            self.store.put_action(&rec).await?;
            self.audit_state(&rec, None).await;

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
                            return self.skip_protected_account(&mut rec, &hit).await;
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
                    return self.skip_protected_group(&mut rec, &group, &via).await;
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
                Some(Verdict::Clear) | None => connector.execute(&request).await,
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
                    self.store.put_action(&rec).await?;
                    self.audit_state(&rec, Some(result.outcome.as_str())).await;
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
                    self.store.put_action(&rec).await?;
                    self.audit_state(&rec, Some(result.outcome.as_str())).await;
                    self.count_end(&rec, ActionEnd::NotFound);
                    info!("subject not found on target; nothing to do");
                }
                Outcome::Retry { after, reason } => {
                    if rec.attempts >= lane.max_attempts {
                        let reason = format!(
                            "gave up after {} attempts; last error: {reason}",
                            rec.attempts
                        );
                        return self.finish_failed(&mut rec, reason).await;
                    }
                    let delay = self.backoff.delay(rec.attempts, after, &mut rand::rng());
                    rec.state = ActionState::Planned;
                    rec.last_error = Some(reason.clone());
                    rec.next_attempt_at = Some(
                        Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                    );
                    self.store.put_action(&rec).await?;
                    self.audit_state(&rec, Some("retry")).await;
                    info!(attempts = rec.attempts, delay_ms = delay.as_millis() as u64, error = %reason,
                        "action will be retried");
                }
                Outcome::Failed { reason } => {
                    return self.finish_failed(&mut rec, reason).await;
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn finish_failed(
        &self,
        rec: &mut ActionRecord,
        reason: String,
    ) -> Result<(), crate::ledger::StoreError> {
        rec.state = ActionState::Failed;
        rec.next_attempt_at = None;
        rec.last_error = Some(reason.clone());
        rec.updated_at = Utc::now();
        self.store.put_action(rec).await?;
        self.audit_state(rec, Some("failed")).await;
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
    async fn skip_protected_group(
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
    async fn skip_protected_account(
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
        self.store.put_action(rec).await?;
        self.audit_state(rec, Some(hit.as_str())).await;
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
        let mut g = AuditDraft::new(AuditKind::Guard, Actor::system("executor"), body);
        g.subject = Some(rec.subject.clone());
        g.action_key = Some(rec.key.clone());
        stamp_origin(&mut g, rec);
        if let Err(e) = self.store.append_audit(vec![g]).await {
            error!(action_key = %rec.key, error = %e, "could not write the guard record to the audit trail");
        }
        self.metrics.guard_block(hit.as_str());
        self.count_end(rec, ActionEnd::Skipped);
        Ok(())
    }

    /// The action `original` was undone by the reversal `by`: it becomes `restored`.
    async fn mark_restored(
        &self,
        original: &str,
        by: &str,
    ) -> Result<(), crate::ledger::StoreError> {
        let Some(mut orig) = self.store.get_action(original).await? else {
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
        self.store.put_action(&orig).await?;
        self.audit_state(&orig, None).await;
        self.count_end(&orig, ActionEnd::Restored);
        Ok(())
    }

    /// Append an `action_state` record for `rec`'s new state (`outcome`: the connector's answer).
    async fn audit_state(&self, rec: &ActionRecord, outcome: Option<&str>) {
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
        let mut attempts = crate::retry::Attempts::new(crate::retry::AUDIT_WRITE);
        for attempt in 1..=3 {
            match self.store.append_audit(vec![d.clone()]).await {
                Ok(_) => return,
                Err(e) if attempt == 3 => {
                    error!(action_key = %rec.key, state = rec.state.as_str(), error = %e,
                        "could not write the action's state change to the audit trail");
                }
                Err(_) => tokio::time::sleep(attempts.next_wait()).await,
            }
        }
    }

    fn count_end(&self, rec: &ActionRecord, end: ActionEnd) {
        self.metrics
            .action_end(&rec.connector, rec.operation.as_str(), end);
    }

    fn observe_containment(&self, rec: &ActionRecord) {
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
fn success_notice(rec: &ActionRecord) -> Option<Notice> {
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

/// Combine the pre-state recorded by earlier attempts with this attempt's. The first value of a field
/// wins (it is the state before *any* change), except lists, which are unioned: a group removal that
/// failed halfway and was retried must remember the groups removed by both attempts.
fn merge_pre_state(
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

#[cfg(test)]
mod tests {
    use super::{merge_pre_state, success_notice};
    use crate::action::Operation;
    use crate::ledger::{ActionRecord, ActionState, Origin};
    use crate::notify::Notice;
    use serde_json::json;

    fn rec(op: Operation, origin: Origin, reverses: Option<&str>) -> ActionRecord {
        let now = chrono::Utc::now();
        ActionRecord {
            key: "k2".into(),
            origin,
            rule: "r".into(),
            policy_digest: String::new(),
            subject: "alice@example.com".into(),
            connector: "okta".into(),
            operation: op,
            reason: "x".into(),
            state: ActionState::Succeeded,
            attempts: 1,
            next_attempt_at: None,
            last_error: None,
            response: None,
            pre_state: None,
            reverses: reverses.map(str::to_string),
            linked_alerts: vec![],
            note: None,
            state_reason: None,
            requested_by: None,
            expires_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn success_notices_name_the_lockout_only_when_there_is_one() {
        let manual = |id: &str| Origin::Manual {
            request_id: id.into(),
            actor: "bob".into(),
        };
        let alert = Origin::Alert {
            alert_id: "a1".into(),
            dedup_key: "d".into(),
            alert_time: chrono::Utc::now(),
        };
        match success_notice(&rec(Operation::DisableAccount, manual("L1"), None)) {
            Some(Notice::LockoutDone { lockout_id, .. }) => {
                assert_eq!(lockout_id.as_deref(), Some("L1"))
            }
            other => panic!("{other:?}"),
        }
        match success_notice(&rec(Operation::RevokeSessions, alert.clone(), None)) {
            Some(Notice::LockoutDone { lockout_id, .. }) => assert_eq!(lockout_id, None),
            other => panic!("{other:?}"),
        }
        match success_notice(&rec(Operation::EnableAccount, manual("L1"), Some("k1"))) {
            Some(Notice::Restored { lockout_id, .. }) => {
                assert_eq!(lockout_id.as_deref(), Some("L1"))
            }
            other => panic!("{other:?}"),
        }
        // A single-action restore uses the original's key as its request id: no lockout.
        match success_notice(&rec(Operation::EnableAccount, manual("k1"), Some("k1"))) {
            Some(Notice::Restored { lockout_id, .. }) => assert_eq!(lockout_id, None),
            other => panic!("{other:?}"),
        }
        assert_eq!(success_notice(&rec(Operation::Notify, alert, None)), None);
    }

    #[test]
    fn pre_state_keeps_the_first_values_and_unions_lists() {
        let first = json!({"active": true, "groups": [{"id": "a"}, {"id": "b"}]});
        let retry = json!({"active": false, "groups": [{"id": "c"}, {"id": "a"}], "id": "u1"});
        let merged = merge_pre_state(Some(first), Some(retry)).unwrap();
        assert_eq!(merged["active"], true, "state before any change wins");
        assert_eq!(
            merged["groups"],
            json!([{"id": "a"}, {"id": "b"}, {"id": "c"}])
        );
        assert_eq!(merged["id"], "u1");
        assert_eq!(merge_pre_state(None, Some(json!(1))), Some(json!(1)));
        assert_eq!(merge_pre_state(Some(json!(1)), None), Some(json!(1)));
    }
}
