//! The executor drains the ledger: it claims due actions, runs them through their connector,
//! records the outcome, and schedules retries.
//!
//! # Lanes
//!
//! Every connector instance is a *lane*: its own concurrency limit (`concurrency` of the instance),
//! its own queue (the ledger's per-connector lane index) and its own claims. A claim round asks the
//! store, in one round trip, for each lane with free slots, for at most that many of the lane's due
//! actions — never more than the lane can start at once, so nothing claimed waits behind a busy
//! target with its lease running out. A paced, throttled, failing or hanging target therefore
//! fills only its own slots: its backlog stays in the ledger, costs the other lanes' claims
//! nothing, and a responder's lockout on a healthy connector starts as soon as it is recorded.
//!
//! Within a lane, actions start in [`Urgency`](crate::ledger::Urgency) order: manual (a
//! responder's lockout or restore) first, then automatic ones by their alert's severity, critical
//! first, then the one due longest. Newly recorded actions are handed straight to the lane
//! ([`Handoff`]) when it has a free slot; otherwise they wait in the ledger for the next slot.
//!
//! The lanes are observable: `deprovd_connector_queue_depth{connector}` (due actions waiting),
//! `deprovd_connector_oldest_due_seconds{connector}` and `deprovd_action_wait_seconds{connector,
//! reason}` (`queued`: due until started; `rate_budget`: paced by the target's announced budget;
//! `retry_backoff`: the delay before a retry).
//!
//! # Crash safety
//!
//! Crash safety comes from the ledger, not from memory: an action is `planned` in the store before any
//! call; while it runs it is `running` with `next_attempt_at` set to the end of its claim (a lease), so
//! if this process dies mid-call the action becomes due again once the lease ends and another executor
//! (or this one after restart) finishes it. Connectors read state before writing, so a repeated call
//! after such a crash is `already_done`, not a second side effect.
//!
//! # Cost per action
//!
//! A claim round claims *and reads* its actions in one store step; an action then costs two
//! writes: `running` (the lease, before the call) and its outcome, which carries the outcome's
//! `action_state` audit record and releases the claim in the same store step
//! ([`ActionStore::record_transition`]; on Redis one script run, grouped with every other change in
//! flight). The `running` state is in the ledger, not the trail: each attempt leaves one
//! `action_state` record, with its outcome and attempt number (a crash mid-call shows as the next
//! attempt's number). If the combined step fails, the state is written alone and the audit records
//! are appended after it with a few quick retries, then logged at error level rather than undoing
//! the change (the ledger is the source of truth; the connector call has happened either way).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::audit::{Actor, AuditDraft, AuditKind};
use crate::config::Problem;
use crate::connectors::{ConnectorSet, Operation, OperationRequest, Outcome, Resolution};
use crate::deadletter::DeadLetterSink;
use crate::guard::ProtectedSubjects;
use crate::guard::groups::{GroupGuard, Verdict};
use crate::ledger::{ActionRecord, ActionState, ActionStore, AuditStore, Origin, StateStore};
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
    /// Most actions one lane claims in one round (its free slots bound it too).
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

/// Handoffs not yet taken by the run loop; beyond this the pipeline falls back to waking a scan.
const HANDOFF_CAPACITY: usize = 4096;

/// The pipeline's side of the direct handoff (see [`Executor::handoff`]).
#[derive(Clone)]
pub(crate) struct Handoff {
    /// Connector names whose lanes just got a runnable action.
    tx: mpsc::Sender<String>,
    wake: Arc<Notify>,
}

impl Handoff {
    /// `action` was just recorded, runnable: its lane claims at once if it has a free slot. Never
    /// blocks ingestion: when the queue is full the executor is woken to claim for every lane
    /// instead (the action is in the ledger either way).
    pub(crate) fn offer(&self, action: &ActionRecord) {
        if self.tx.try_send(action.connector.clone()).is_err() {
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

/// A connector instance's lane: its limits, fixed at start.
struct Lane {
    connector: String,
    /// Most of its actions running at once in this process: also the most one claim round takes.
    concurrency: usize,
    max_attempts: u32,
}

/// A lane's moving parts, owned by the run loop alone (no locks).
#[derive(Debug, Clone, Default)]
struct LaneState {
    /// Actions of this lane running in this process.
    busy: usize,
    /// Due actions the last claim round left waiting (a hint: worth a claim round when a slot
    /// frees).
    waiting: u64,
    /// When the lane next has work, as the last claim round saw it (or a retry scheduled since).
    next_due: Option<tokio::time::Instant>,
    /// Something may have become claimable here: a handoff, or a slot freed while actions waited.
    dirty: bool,
}

/// What a finished task tells the run loop: its lane, and when the action is due again if it
/// was rescheduled.
type Finished = (Option<usize>, Option<chrono::DateTime<Utc>>);

/// How often the run loop refreshes every lane's gauges (queue depth, oldest due) and the pending
/// gauge: each refresh is a store round trip, so not on every wake.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);

/// How often the run loop looks for due actions of connectors that are no longer configured (they
/// have no lane; each is failed with that reason, as before lanes).
const ORPHAN_SWEEP: Duration = Duration::from_secs(60);

/// Runs ledger actions through connectors. Cheap to share (`Arc`).
pub(crate) struct Executor {
    /// The ledger's actions: due lanes, claims, records. (Built from the one `StateStore` the app
    /// wires; the executor uses only these two parts of it.)
    actions: Arc<dyn ActionStore>,
    /// Where each state change is recorded.
    audit: Arc<dyn AuditStore>,
    connectors: ConnectorSet,
    /// One per configured connector instance, in name order.
    lanes: Vec<Lane>,
    /// Connector name → index in `lanes`.
    lane_of: HashMap<String, usize>,
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
        let mut names: Vec<&String> = connectors.keys().collect();
        names.sort();
        let lanes: Vec<Lane> = names
            .into_iter()
            .map(|name| {
                let l = limits.get(name).copied().unwrap_or(ConnectorLimits {
                    concurrency: 8,
                    max_attempts: cfg.retry.max_attempts,
                });
                Lane {
                    connector: name.clone(),
                    concurrency: l.concurrency.max(1),
                    max_attempts: l.max_attempts.max(1),
                }
            })
            .collect();
        let lane_of = lanes
            .iter()
            .enumerate()
            .map(|(i, l)| (l.connector.clone(), i))
            .collect();
        let (handoff_tx, handoff_rx) = mpsc::channel(HANDOFF_CAPACITY);
        Self {
            handoff_tx,
            handoff_rx: Mutex::new(Some(handoff_rx)),
            actions: store.clone(),
            audit: store,
            connectors,
            lanes,
            lane_of,
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

    /// Handle the pipeline uses to tell this executor about each newly recorded runnable action, so
    /// its lane claims it at once (most urgent first) rather than at the next poll.
    pub(crate) fn handoff(&self) -> Handoff {
        Handoff {
            tx: self.handoff_tx.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Run `key` in lane `lane` (`None`: its connector has no lane) unless this process already
    /// works on it (a call that outlived its claim, claimed again); `claimed` when a claim round
    /// already took its claim.
    /// `rec` is the action as read with its claim, when the claim round read it.
    fn start(
        self: &Arc<Self>,
        key: String,
        lane: Option<usize>,
        claimed: bool,
        rec: Option<ActionRecord>,
        tasks: &mut JoinSet<Finished>,
    ) -> bool {
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
            let due_again = this.run_one(&key, claimed, rec).await;
            this.inflight.lock().expect("not poisoned").remove(&key);
            (lane, due_again)
        });
        true
    }

    /// Claim each lane's due actions whenever it has free slots and work — at once after a
    /// handoff, when a slot frees while actions wait, when its next action is due, and every
    /// `poll_interval` (other replicas' work) — until `shutdown` turns true; then wait for
    /// in-flight calls to finish.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        use tokio::time::Instant;
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut lanes = vec![LaneState::default(); self.lanes.len()];
        let mut store_trouble = crate::retry::Attempts::new(crate::retry::RECONNECT);
        let mut handoffs = self
            .handoff_rx
            .lock()
            .expect("not poisoned")
            .take()
            .expect("Executor::run is called once");
        let mut gauges_at = Instant::now();
        let mut orphans_at = Instant::now();
        let mut next_scan = Instant::now();
        info!(owner = %self.owner, lanes = self.lanes.len(), "executor started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Some(done) = tasks.try_join_next() {
                self.finished(done, &mut lanes);
            }
            let now = Instant::now();
            if now >= next_scan {
                let gauges = now >= gauges_at;
                match self.claim_round(&mut lanes, &mut tasks, true, gauges).await {
                    Ok(()) => {
                        store_trouble.reset();
                        next_scan = now + self.cfg.poll_interval;
                        if gauges {
                            gauges_at = now + GAUGE_REFRESH;
                            if let Ok(n) = self.actions.pending_count().await {
                                self.metrics.ledger_pending.set(n as i64);
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "executor cannot claim due actions; retrying");
                        next_scan = now + store_trouble.next_wait();
                    }
                }
                if now >= orphans_at {
                    orphans_at = now + ORPHAN_SWEEP;
                    self.sweep_orphans(&mut tasks).await;
                }
            } else if lanes.iter().enumerate().any(|(i, l)| self.wants(i, l, now)) {
                if let Err(e) = self.claim_round(&mut lanes, &mut tasks, false, false).await {
                    warn!(error = %e, "executor cannot claim due actions; retrying");
                    next_scan = now + store_trouble.next_wait();
                    for l in &mut lanes {
                        l.dirty = false;
                        l.next_due = l.next_due.map(|t| t.max(next_scan));
                    }
                }
            }
            // Sleep until the next scan, or the earliest lane with room and work due.
            let wake_at = lanes
                .iter()
                .enumerate()
                .filter(|(i, l)| l.busy < self.lanes[*i].concurrency)
                .filter_map(|(_, l)| l.next_due)
                .fold(next_scan, Instant::min);
            tokio::select! {
                Some(connector) = handoffs.recv() => {
                    self.take_offer(&connector, &mut lanes);
                    // Take every handoff queued meanwhile: one claim round serves them all.
                    while let Ok(connector) = handoffs.try_recv() {
                        self.take_offer(&connector, &mut lanes);
                    }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => self.finished(done, &mut lanes),
                _ = self.wake.notified() => next_scan = Instant::now(),
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = shutdown.changed() => {}
            }
        }
        info!(
            inflight = tasks.len(),
            "executor stopping; waiting for in-flight calls"
        );
        while tasks.join_next().await.is_some() {}
    }

    /// Lane `i` has a free slot and something to claim: a handoff, a slot freed while actions
    /// waited, or its next action is due.
    fn wants(&self, i: usize, l: &LaneState, now: tokio::time::Instant) -> bool {
        l.busy < self.lanes[i].concurrency && (l.dirty || l.next_due.is_some_and(|t| t <= now))
    }

    /// A task ended: free its slot; a lane with waiting actions claims again, and a rescheduled
    /// action makes its lane due then.
    fn finished(&self, done: Result<Finished, tokio::task::JoinError>, lanes: &mut [LaneState]) {
        let Ok((Some(i), due_again)) = done else {
            return;
        };
        let l = &mut lanes[i];
        l.busy = l.busy.saturating_sub(1);
        if l.waiting > 0 {
            l.dirty = true;
        }
        if let Some(at) = due_again {
            let at =
                tokio::time::Instant::now() + (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            l.next_due = Some(l.next_due.map_or(at, |t| t.min(at)));
        }
    }

    /// A newly recorded runnable action on `connector`: its lane claims at the next turn of the
    /// loop if it has a free slot, else as soon as one frees.
    fn take_offer(&self, connector: &str, lanes: &mut [LaneState]) {
        if let Some(&i) = self.lane_of.get(connector) {
            lanes[i].dirty = true;
        }
    }

    /// One claim round: every lane with free slots that `wants` work (or all of them on a
    /// `scan`) claims up to its free slots, in one store round trip; `gauges` adds the full lanes
    /// (claiming nothing) so that every lane's queue depth and oldest due age are refreshed.
    async fn claim_round(
        self: &Arc<Self>,
        lanes: &mut [LaneState],
        tasks: &mut JoinSet<Finished>,
        scan: bool,
        gauges: bool,
    ) -> Result<(), crate::ledger::StoreError> {
        let now = tokio::time::Instant::now();
        let mut asked = Vec::new();
        let mut requests = Vec::new();
        for (i, l) in lanes.iter().enumerate() {
            let free = self.lanes[i].concurrency.saturating_sub(l.busy);
            let limit = free.min(self.cfg.batch);
            let claim = limit > 0 && (scan || self.wants(i, l, now));
            if claim || gauges {
                asked.push(i);
                requests.push(crate::ledger::LaneRequest {
                    connector: &self.lanes[i].connector,
                    limit: if claim { limit } else { 0 },
                });
            }
        }
        if requests.is_empty() {
            return Ok(());
        }
        let wall = Utc::now();
        let found = self
            .actions
            .claim_lanes(&requests, wall, &self.owner, self.cfg.claim_ttl)
            .await?;
        for (i, due) in asked.into_iter().zip(found) {
            let lane = &self.lanes[i];
            let l = &mut lanes[i];
            let mut records = due.records.into_iter();
            for key in due.claimed {
                let rec = records.next().flatten();
                if self.start(key, Some(i), true, rec, tasks) {
                    l.busy += 1;
                }
            }
            l.dirty = false;
            l.waiting = due.waiting;
            l.next_due = due
                .next_due
                .map(|t| now + (t - wall).to_std().unwrap_or(Duration::ZERO));
            let oldest = due
                .oldest_due
                .map_or(0.0, |t| (wall - t).num_milliseconds().max(0) as f64 / 1e3);
            self.metrics.lane(&lane.connector, due.waiting, oldest);
        }
        Ok(())
    }

    /// Due actions whose connector is no longer configured have no lane: find them in the due
    /// index (at most a batch, now and then) and fail them with that reason.
    async fn sweep_orphans(self: &Arc<Self>, tasks: &mut JoinSet<Finished>) {
        let Ok(keys) = self.actions.due_actions(Utc::now(), self.cfg.batch).await else {
            return;
        };
        for key in keys {
            if let Ok(Some(rec)) = self.actions.get_action(&key).await
                && !self.lane_of.contains_key(&rec.connector)
            {
                self.start(key, None, false, None, tasks);
            }
        }
    }
}
