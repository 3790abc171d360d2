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

mod effects;
mod run;
#[cfg(test)]
mod tests;

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
pub(crate) struct ConnectorLimits {
    pub concurrency: usize,
    pub max_attempts: u32,
}

struct Lane {
    permits: Arc<Semaphore>,
    max_attempts: u32,
}

/// Runs ledger actions through connectors. Cheap to share (`Arc`).
pub(crate) struct Executor {
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
    pub(crate) fn new(
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
    pub(crate) fn with_group_guard(mut self, guard: Option<Arc<GroupGuard>>) -> Self {
        self.group_guard = guard;
        self
    }

    /// Check the identifiers a connector resolves an action's subject to (its LDAP entry's `uid`,
    /// `mail`, `sAMAccountName`, `userPrincipalName`; a spec lookup's record; the IAM user name)
    /// against `protected` before every destructive operation. The planning guard compares the
    /// subject as written; this compares the account the target will actually touch, so no
    /// spelling the target folds differently can reach a protected account. Fails closed: a
    /// target that cannot answer now makes the action retry later, never act.
    pub(crate) fn with_protected_subjects(mut self, protected: Arc<ProtectedSubjects>) -> Self {
        self.protected = (!protected.is_empty()).then_some(protected);
        self
    }

    /// Tell `emitter` about every successful containment (disable, revoke sessions), so deprovd's
    /// Shared Signals transmitter can push RISC/CAEP events downstream. Queue-only: never blocks.
    pub(crate) fn signal_containment_to(&self, emitter: crate::ssf::transmit::SignalEmitter) {
        let _ = self.signals.set(emitter);
    }

    /// Handle the pipeline uses to pass each newly recorded runnable action straight to this executor,
    /// so the first connector request leaves without a poll or a scan of the due index.
    pub(crate) fn handoff(&self) -> Handoff {
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
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
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
}
