//! [`EmbeddedStore`]: the ledger in one [`redb`] file on local disk, for single-node deployments.
//!
//! Every mutating call is one redb write transaction, which is ACID and fsynced on commit
//! (`Durability::Immediate`, redb's default): after `insert_action` returns, the record survives a
//! crash or power loss, which is what lets the pipeline acknowledge the alert's source. redb allows one
//! writer at a time, so the check-then-write steps (duplicate check, coalesce slot, claim) are atomic
//! without any extra locking, exactly like the Lua scripts of the Redis store.
//!
//! redb is blocking I/O, so every call runs on tokio's blocking pool (`spawn_blocking`); the async
//! runtime never waits on the disk.
//!
//! Tables (see the [module docs](super) for why each index exists):
//!
//! | table | key | value |
//! |---|---|---|
//! | `actions` | action key | JSON record |
//! | `due` | (next attempt ms, action key) | () |
//! | `lanes` | (connector, [`lane_score`] of urgency rank and next attempt ms, action key) | () |
//! | `pending` | action key | () |
//! | `coalesce` | coalesce key | (action key, expires ms) |
//! | `claims` | action key | (owner, expires ms) |
//! | `created` | (created ms, action key) | () |
//! | `by_subject` / `by_alert` / `by_state` | (subject / alert id / state, created ms, action key) | () |
//! | `docs` | (namespace, key) | (expires ms or 0, JSON document) |
//! | `audit` | seq | JSON audit record |
//! | `alerts` | (received ms, alert id) | JSON retained alert (`[policy] retain_alerts`) |
//! | `audit_meta` | `head` | `<seq>:<hash>` of the last audit record |
//! | `breaker_subjects` / `breaker_times` | (scope, subject) / (scope, ms, subject) | last admitted ms / () |
//! | `breaker_counts` / `breaker_open` | scope | distinct subjects / trip time ms (present while open) |
//!
//! An audit append reads the head, seals the batch after it and writes records and head in one write
//! transaction; redb's single writer makes that atomic.
//!
//! Expiring entries (coalesce slots, claims) compare against the wall clock when read and are
//! overwritten in place once stale, so they need no sweeper.

mod actions;
mod alerts;
mod audit;
mod breaker;
mod docs;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{
    Derived, LANE_SPAN_MS, decode, decode_doc, effective_limit, encode, encode_doc, from_ms,
    head_string, lane_score, matches, parse_head,
};
use crate::audit::{AuditDraft, AuditHead, AuditRecord, seal_batch};
use crate::ledger::{
    ActionFilter, ActionRecord, BreakerAdmission, BreakerScope, BreakerState, Inserted, LaneDue,
    StateStore, StoreError, Urgency,
};
use tx::{claim_lanes_tx, index_lanes, insert_tx, list_tx, put_tx};

/// Name of the ledger file inside the data directory.
const FILE_NAME: &str = "ledger.redb";

/// The records: action key → JSON [`ActionRecord`]. Source of truth for every index below.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("actions");
/// Due index: the executor's "what is due now, earliest first" is a range read from the start.
const DUE: TableDefinition<(i64, &str), ()> = TableDefinition::new("due");
/// Lane index: the due index per connector, by (urgency rank, next attempt): a claim round reads
/// only the lanes it asks for, most urgent first.
const LANES: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("lanes");
/// Pending set: `pending_count` is the table length, which redb keeps in O(1).
const PENDING: TableDefinition<&str, ()> = TableDefinition::new("pending");
/// Coalesce slots: coalesce key → (holding action key, expiry ms). One lookup per insert.
const COALESCE: TableDefinition<&str, (&str, i64)> = TableDefinition::new("coalesce");
/// Claims: action key → (owner, expiry ms). A crashed holder's claim lapses by time.
const CLAIMS: TableDefinition<&str, (&str, i64)> = TableDefinition::new("claims");
/// Newest-first listing without a filter.
const CREATED: TableDefinition<(i64, &str), ()> = TableDefinition::new("created");
/// A secondary index: (field value, created ms, action key), walked newest first for one value.
type SecondaryIndex = TableDefinition<'static, (&'static str, i64, &'static str), ()>;

/// Listing by subject ("what did we do to alice?") without scanning the ledger.
const BY_SUBJECT: SecondaryIndex = TableDefinition::new("by_subject");
/// Listing by alert, including alerts coalesced into an action.
const BY_ALERT: SecondaryIndex = TableDefinition::new("by_alert");
/// Listing by state (the approvals queue is `awaiting_approval`).
const BY_STATE: SecondaryIndex = TableDefinition::new("by_state");
/// Small JSON documents beside the ledger (lockouts, idempotency claims): (namespace, key) →
/// (expiry ms, 0 for never; JSON bytes).
const DOCS: TableDefinition<(&str, &str), (i64, &[u8])> = TableDefinition::new("docs");

/// Retained alerts for replay: (received ms, alert id) → JSON [`RetainedAlert`](crate::ledger::RetainedAlert).
const ALERTS: TableDefinition<(i64, &str), &[u8]> = TableDefinition::new("alerts");

/// The audit trail: seq → JSON [`AuditRecord`](crate::audit::AuditRecord).
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// `head` → `<seq>:<hash>`, kept apart from the records so a cut-off tail is noticed.
const AUDIT_META: TableDefinition<&str, &str> = TableDefinition::new("audit_meta");

/// Breaker windows: (scope, subject) → when last admitted (ms). One entry per subject, so a subject
/// admitted twice counts once.
const BREAKER_SUBJECTS: TableDefinition<(&str, &str), i64> =
    TableDefinition::new("breaker_subjects");
/// The same entries by (scope, admitted ms, subject): pruning the window is a range read from the
/// start instead of a scan of every subject.
const BREAKER_TIMES: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("breaker_times");
/// scope → distinct subjects in `BREAKER_SUBJECTS`, kept beside them so an admission is O(log n).
const BREAKER_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("breaker_counts");
/// scope → when its breaker tripped (ms); present exactly while it is open.
const BREAKER_OPEN: TableDefinition<&str, i64> = TableDefinition::new("breaker_open");

/// The ledger in a single redb file under a data directory. Cheap to clone (shares the database).
#[derive(Clone)]
pub(crate) struct EmbeddedStore {
    /// Shared with the blocking tasks that do the work.
    db: Arc<Database>,
    /// The file, for error messages.
    file: Arc<PathBuf>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("file", &self.file)
            .finish()
    }
}

/// Any redb error as a [`StoreError`]: I/O is worth retrying, corruption never is.
fn db_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(e) => StoreError::Unavailable(format!("embedded store I/O error: {e}")),
        redb::Error::Corrupted(reason) => StoreError::Corrupt {
            key: FILE_NAME.to_string(),
            reason,
        },
        redb::Error::DatabaseAlreadyOpen => StoreError::Other(
            "the embedded ledger is already open by another process; run one deprovd per data \
             directory, or use the Redis backend to run several"
                .into(),
        ),
        other => StoreError::Other(format!("embedded store error: {other}")),
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Whole milliseconds of `d`, saturating (an absurd window or TTL must not wrap around).
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl EmbeddedStore {
    /// Open (or create) the ledger file in `dir`, creating the directory if needed. Blocking: call it
    /// at startup or from `spawn_blocking`. An unclean shutdown is repaired here, and every
    /// committed transaction is visible afterwards.
    pub(crate) fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Other(format!(
                "cannot create the data directory `{}`: {e}; set [state].path to a writable directory",
                dir.display()
            ))
        })?;
        let file = dir.join(FILE_NAME);
        let db = Database::create(&file).map_err(|e| match db_err(e) {
            StoreError::Other(m) => StoreError::Other(format!("opening `{}`: {m}", file.display())),
            other => other,
        })?;
        // Create every table once so that read transactions never meet a missing table.
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(RECORDS).map_err(db_err)?;
            tx.open_table(DUE).map_err(db_err)?;
            tx.open_table(LANES).map_err(db_err)?;
            tx.open_table(PENDING).map_err(db_err)?;
            tx.open_table(COALESCE).map_err(db_err)?;
            tx.open_table(CLAIMS).map_err(db_err)?;
            tx.open_table(CREATED).map_err(db_err)?;
            tx.open_table(BY_SUBJECT).map_err(db_err)?;
            tx.open_table(BY_ALERT).map_err(db_err)?;
            tx.open_table(BY_STATE).map_err(db_err)?;
            tx.open_table(DOCS).map_err(db_err)?;
            tx.open_table(AUDIT).map_err(db_err)?;
            tx.open_table(ALERTS).map_err(db_err)?;
            tx.open_table(AUDIT_META).map_err(db_err)?;
            tx.open_table(BREAKER_SUBJECTS).map_err(db_err)?;
            tx.open_table(BREAKER_TIMES).map_err(db_err)?;
            tx.open_table(BREAKER_COUNTS).map_err(db_err)?;
            tx.open_table(BREAKER_OPEN).map_err(db_err)?;
        }
        index_lanes(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            file: Arc::new(file),
        })
    }

    /// Run `f` against the database on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Other(format!("embedded store task failed: {e}")))?
    }

    /// Run `f` in a write transaction on the blocking pool and commit only when it reports a change:
    /// a no-op (a claim already held, a document already there) is aborted and costs no disk write.
    /// Returns the report.
    async fn write_if<F>(&self, f: F) -> Result<bool, StoreError>
    where
        F: FnOnce(&WriteTransaction) -> Result<bool, StoreError> + Send + 'static,
    {
        self.run(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            let changed = f(&tx)?;
            if changed {
                tx.commit().map_err(db_err)?;
            } else {
                tx.abort().map_err(db_err)?;
            }
            Ok(changed)
        })
        .await
    }
}

#[async_trait]
impl StateStore for EmbeddedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            tx.open_table(RECORDS).map_err(db_err)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
impl EmbeddedStore {
    /// Test-only tampering: overwrite the stored bytes at `seq` (`None` deletes the entry).
    pub(crate) fn tamper_audit(&self, seq: u64, bytes: Option<&[u8]>) {
        let tx = self.db.begin_write().unwrap();
        {
            let mut t = tx.open_table(AUDIT).unwrap();
            match bytes {
                Some(b) => {
                    t.insert(seq, b).unwrap();
                }
                None => {
                    t.remove(seq).unwrap();
                }
            }
        }
        tx.commit().unwrap();
    }
}

#[cfg(test)]
mod tests;
