//! The action ledger: every planned action is written here *before* its source is acknowledged, and the
//! executor drains it. The [`StateStore`] trait has two implementations that pass one shared test suite:
//! [`store::redis::RedisStore`] (production, shared by replicas) and [`store::embedded::EmbeddedStore`]
//! (single node, on disk, zero setup).

pub(crate) mod store;
mod verify;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::action::ActionState;
pub(crate) use crate::action::{
    ActionRecord, NewAction, Operation, Origin, StateReason, Urgency, action_key, coalesce_key,
};
use crate::audit::{AuditDraft, AuditHead, AuditRecord};
pub use verify::audit_check;

/// Result of [`StateStore::insert_action`].
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// New action recorded; the executor will run it.
    New,
    /// An action with the same idempotency key exists (a redelivery): nothing changes.
    Duplicate,
    /// Another live action for the same (subject, connector, operation) absorbed this one; the alert
    /// was linked to it. Holds the absorbing action's key.
    Coalesced(String),
    /// New action recorded, and it took the coalesce slot over from a held (`awaiting_approval`)
    /// action that it [supersedes](ActionState::superseded_by). Holds the held action's key; the
    /// store leaves that action as it was, and the caller cancels it under its decision claim (as
    /// approvals do), so that it cannot also run after an approval.
    Superseded(String),
}

/// Filter for listing actions; all set fields must match.
#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    pub subject: Option<String>,
    pub state: Option<ActionState>,
    pub alert_id: Option<String>,
    /// The connector instance.
    pub connector: Option<String>,
    /// The policy rule id (`manual` for responders' lockouts, `restore` for restores).
    pub rule: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// The key starts with this (lower-case hex): how the CLI finds an action by a short prefix.
    pub key_prefix: Option<String>,
    /// Oldest first instead of newest first: how the approval-expiry sweep pages through held
    /// actions (the first to lapse come first, so it stops at the first page that is not all due).
    pub oldest_first: bool,
    pub limit: usize,
}

/// One lane's share of a claim round ([`ActionStore::claim_lanes`]): a connector instance and how
/// many of its due actions the caller can start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneRequest<'a> {
    pub connector: &'a str,
    /// At most this many are claimed; `0` only reports the lane's backlog.
    pub limit: usize,
}

/// What one claim round found in one lane.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaneDue {
    /// Keys claimed for the caller, most urgent first.
    pub claimed: Vec<String>,
    /// The claimed actions as read in the same atomic step as their claims (claim-and-read: the
    /// executor needs no separate read per action), in `claimed` order; `None` where a claimed key
    /// has no record.
    pub records: Vec<Option<ActionRecord>>,
    /// Actions due at `now` that this round did not claim: waiting for a free slot, or held by
    /// another executor's claim. The lane's queue depth.
    pub waiting: u64,
    /// Earliest `next_attempt_at` among the actions due at `now` (claimed by this round or not):
    /// how long the lane's oldest due action has waited.
    pub oldest_due: Option<DateTime<Utc>>,
    /// Earliest `next_attempt_at` after `now`: when the lane next has work, so the executor can
    /// sleep until then.
    pub next_due: Option<DateTime<Utc>>,
}

/// One blast-radius breaker scope as the store needs it: `global` or a connector instance name,
/// with its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerScope {
    pub name: String,
    /// The breaker opens when *more than* this many distinct subjects were admitted in `window`.
    pub threshold: u64,
    pub window: Duration,
}

/// What [`StateStore::breaker_admit`] found for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerAdmission {
    pub scope: String,
    /// Distinct subjects in the window, this one included.
    pub subjects: u64,
    /// The breaker is open (it was already, or this admission tripped it).
    pub open: bool,
    /// This admission tripped it: exactly one admission per trip sees `true`, whatever the number
    /// of replicas, so exactly one alarm is raised.
    pub tripped: bool,
}

/// What [`StateStore::breaker_status`] reports for one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "BreakerScope")]
pub struct BreakerState {
    pub scope: String,
    pub open: bool,
    /// When it tripped, while open.
    #[serde(default)]
    pub opened_at: Option<DateTime<Utc>>,
    /// Distinct subjects in the current window.
    pub subjects: u64,
    pub threshold: u64,
    /// The window's length, as humantime (`10m`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub window: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    #[error("state store data is corrupt at `{key}`: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("state store error: {0}")]
    Other(String),
    /// The store answers but is configured so that it could lose an acknowledged write (the
    /// configured durability cannot be met): deprovd refuses to use it until that is fixed.
    #[error("state store refused: {0}")]
    Refused(String),
}

impl StoreError {
    /// Transient (connection) errors are worth retrying; corruption is not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Action records: insert with dedup and coalescing, read, update, the due index, listings, and
/// the executor's claims. The executor, the pipeline, approvals and the API's action views use it.
#[async_trait]
pub trait ActionStore: Send + Sync {
    /// Atomically record `action` unless its key exists (→ `Duplicate`) or a live action for the same
    /// [`coalesce_key`] was recorded within `coalesce_window` (→ `Coalesced`, and `linked_alert` is
    /// appended to that action's `linked_alerts`), if that action [`absorbs`](ActionState::absorbs)
    /// this one; a held holder that a runnable action supersedes gives up its slot
    /// (→ `Superseded`). A new action in a state that
    /// [`absorbs_duplicates`](ActionState::absorbs_duplicates) claims the coalesce slot for the window.
    async fn insert_action(
        &self,
        action: &ActionRecord,
        coalesce_window: Duration,
        linked_alert: Option<&str>,
    ) -> Result<Inserted, StoreError>;

    async fn get_action(&self, key: &str) -> Result<Option<ActionRecord>, StoreError>;

    /// Overwrite an existing action and keep the indexes true: it is in the due index exactly when it
    /// is `planned` or `running` with a `next_attempt_at` (for `running`, the end of the executor's
    /// lease: a crashed executor's action becomes due again); it frees its coalesce slot when it ends in a state that
    /// does not absorb duplicates.
    async fn put_action(&self, action: &ActionRecord) -> Result<(), StoreError>;

    /// Keys of actions whose `next_attempt_at <= now`, earliest first, at most `limit`.
    async fn due_actions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Earliest `next_attempt_at` among due-indexed actions, so the executor can sleep until then.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Take an exclusive, expiring claim on an action (Redis `SET NX PX`). Only the holder runs it.
    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// The executor's claim round: for each lane (connector instance), claim up to `limit` of its
    /// due actions for `owner` for `ttl` (as [`claim`](Self::claim) would), most urgent first —
    /// [`Urgency`], then the time each became due, then key — skipping actions someone already
    /// holds; and report each lane's backlog. Lanes are indexed apart, so a lane's cost does not
    /// grow with another lane's backlog. One round trip for all lanes; answers in request order.
    async fn claim_lanes(
        &self,
        lanes: &[LaneRequest<'_>],
        now: DateTime<Utc>,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<LaneDue>, StoreError>;

    /// Release a claim held by `owner` (a claim held by someone else is left alone).
    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError>;

    /// The executor's one write per state change: [`put_action`](Self::put_action) of `action`,
    /// the change's `audit` records appended to the trail (as
    /// [`AuditStore::append_audit`] would), and with `release_for` the claim that owner holds on
    /// it released (as [`release`](Self::release)) — together. Redis does all three in one script
    /// run, atomically (the record never changes without its audit records, nor they without it),
    /// and groups concurrent callers' changes into one round trip; the embedded store does them in
    /// turn. An error may leave the action as it was; the caller then falls back to the separate
    /// steps.
    async fn record_transition(
        &self,
        action: &ActionRecord,
        audit: Vec<AuditDraft>,
        release_for: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Actions matching `filter`, newest first.
    async fn list_actions(&self, filter: &ActionFilter) -> Result<Vec<ActionRecord>, StoreError>;

    /// Number of actions in a pending state.
    async fn pending_count(&self) -> Result<u64, StoreError>;
}

/// Small JSON documents with optional expiry: lockouts, idempotency claims, SSF jti records, cursors.
#[async_trait]
pub trait DocStore: Send + Sync {
    /// Store a small JSON document (a lockout, an idempotency claim) under (`ns`, `key`). With
    /// `only_if_absent` this is Redis `SET NX`: an existing, unexpired document is left alone and the
    /// call returns `false`, so two racing requests agree on one winner. `ttl` makes the document
    /// expire (idempotency claims); `None` keeps it.
    async fn put_json(
        &self,
        ns: &str,
        key: &str,
        doc: &serde_json::Value,
        only_if_absent: bool,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError>;

    /// The document stored under (`ns`, `key`), unless absent or expired.
    async fn get_json(&self, ns: &str, key: &str) -> Result<Option<serde_json::Value>, StoreError>;
}

/// The audit trail's storage: appended in sealed batches, read by range, with its head kept apart.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append `drafts` to the audit trail as consecutive records, atomically: the store assigns each
    /// its `seq` and `prev` and seals it, so appenders on several replicas still form one chain, and a
    /// batch is either wholly in the trail or not at all. Returns the sealed records. One round trip
    /// in the common case (Redis retries when another replica appended in between).
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<Vec<AuditRecord>, StoreError>;

    /// Up to `limit` records (0: no limit) in stored order, starting with the one stored at position
    /// `from_seq` (1-based; it holds record `from_seq` unless the trail was tampered with).
    async fn audit_range(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The last appended record's seq and hash, kept apart from the records so that a trail cut off
    /// at the end is detected. `None` while the trail is empty.
    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError>;
}

/// The blast-radius breaker's shared windows, one atomic step per admission.
#[async_trait]
pub trait BreakerStore: Send + Sync {
    /// The blast-radius breaker's one atomic step, for each scope: forget subjects admitted before
    /// `now - window`, admit `subject` at `now` (a subject already in the window is not counted
    /// twice), count the distinct subjects, and open the breaker when the count exceeds the
    /// threshold. One round trip for all scopes; atomic, so replicas racing on a flood agree on
    /// exactly which admission tripped it. An open breaker stays open until
    /// [`breaker_reset`](Self::breaker_reset).
    async fn breaker_admit(
        &self,
        scopes: &[BreakerScope],
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<BreakerAdmission>, StoreError>;

    /// Close the named scopes' breakers and empty their windows (so the next admission does not
    /// trip again at once). Returns the scopes that were open.
    async fn breaker_reset(&self, scopes: &[String]) -> Result<Vec<String>, StoreError>;

    /// Open flag, trip time and distinct subjects in the window (as of `now`) of each scope.
    async fn breaker_status(
        &self,
        scopes: &[BreakerScope],
        now: DateTime<Utc>,
    ) -> Result<Vec<BreakerState>, StoreError>;
}

/// One alert kept for replay (`deprovd policy diff --since`): the normalized alert (its `raw`
/// included) and when it was received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetainedAlert {
    pub received_at: DateTime<Utc>,
    pub alert: crate::alert::Alert,
}

/// Where a page of [`AlertStore::retained_alerts`] ended: pass it back to read the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertCursor {
    pub received_ms: i64,
    pub id: String,
}

impl RetainedAlert {
    /// The cursor just after this alert.
    pub fn cursor(&self) -> AlertCursor {
        AlertCursor {
            received_ms: self.received_at.timestamp_millis(),
            id: self.alert.id.clone(),
        }
    }
}

/// Raw alerts kept for a retention window (`[policy] retain_alerts`), oldest first.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Keep `alerts`, keyed by (received ms, alert id): the same alert received at the same
    /// millisecond is kept once. One round trip / transaction for the batch.
    async fn retain_alerts(&self, alerts: &[RetainedAlert]) -> Result<(), StoreError>;

    /// Up to `limit` alerts received at or after `since` (and after `after`, when given), oldest
    /// first.
    async fn retained_alerts(
        &self,
        since: DateTime<Utc>,
        after: Option<&AlertCursor>,
        limit: usize,
    ) -> Result<Vec<RetainedAlert>, StoreError>;

    /// Forget every alert received before `before`; returns how many were removed.
    async fn prune_alerts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Durable state shared by the pipeline, the executor, the API, the audit trail and the guards: the
/// four narrow stores together, for wiring (`app`, the pipeline and the API state hold it). Services and
/// functions take only the narrow traits they use — the approvals service `ActionStore` + `AuditStore`,
/// the breaker `BreakerStore` + `AuditStore`, the audit mirror `AuditStore` + `DocStore`, lockout lookups
/// `DocStore` (+ `ActionStore`) — and an `Arc<dyn StateStore>` upcasts to any of them.
#[async_trait]
pub trait StateStore: ActionStore + DocStore + AuditStore + BreakerStore + AlertStore {
    /// Round trip to the backend; readiness depends on it.
    async fn ping(&self) -> Result<(), StoreError>;
}
