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
//! | `pending` | action key | () |
//! | `coalesce` | coalesce key | (action key, expires ms) |
//! | `claims` | action key | (owner, expires ms) |
//! | `created` | (created ms, action key) | () |
//! | `by_subject` / `by_alert` / `by_state` | (subject / alert id / state, created ms, action key) | () |
//! | `docs` | (namespace, key) | (expires ms or 0, JSON document) |
//! | `audit` | seq | JSON audit record |
//! | `audit_meta` | `head` | `<seq>:<hash>` of the last audit record |
//! | `breaker_subjects` / `breaker_times` | (scope, subject) / (scope, ms, subject) | last admitted ms / () |
//! | `breaker_counts` / `breaker_open` | scope | distinct subjects / trip time ms (present while open) |
//!
//! An audit append reads the head, seals the batch after it and writes records and head in one write
//! transaction; redb's single writer makes that atomic.
//!
//! Expiring entries (coalesce slots, claims) compare against the wall clock when read and are
//! overwritten in place once stale, so they need no sweeper.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{Derived, decode, effective_limit, encode, from_ms, head_string, matches, parse_head};
use crate::audit::{AuditDraft, AuditHead, AuditRecord, seal_all};
use crate::ledger::{
    ActionFilter, ActionRecord, BreakerAdmission, BreakerScope, BreakerState, Inserted, StateStore,
    StoreError,
};

/// Name of the ledger file inside the data directory.
const FILE_NAME: &str = "ledger.redb";

/// The records: action key → JSON [`ActionRecord`]. Source of truth for every index below.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("actions");
/// Due index: the executor's "what is due now, earliest first" is a range read from the start.
const DUE: TableDefinition<(i64, &str), ()> = TableDefinition::new("due");
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
pub struct EmbeddedStore {
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
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
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
            tx.open_table(PENDING).map_err(db_err)?;
            tx.open_table(COALESCE).map_err(db_err)?;
            tx.open_table(CLAIMS).map_err(db_err)?;
            tx.open_table(CREATED).map_err(db_err)?;
            tx.open_table(BY_SUBJECT).map_err(db_err)?;
            tx.open_table(BY_ALERT).map_err(db_err)?;
            tx.open_table(BY_STATE).map_err(db_err)?;
            tx.open_table(DOCS).map_err(db_err)?;
            tx.open_table(AUDIT).map_err(db_err)?;
            tx.open_table(AUDIT_META).map_err(db_err)?;
            tx.open_table(BREAKER_SUBJECTS).map_err(db_err)?;
            tx.open_table(BREAKER_TIMES).map_err(db_err)?;
            tx.open_table(BREAKER_COUNTS).map_err(db_err)?;
            tx.open_table(BREAKER_OPEN).map_err(db_err)?;
        }
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
}

/// Add `key`'s entries to every index derived from `d`.
fn index_add(tx: &WriteTransaction, d: &Derived<'_>, key: &str) -> Result<(), StoreError> {
    if let Some(due) = d.due_ms {
        tx.open_table(DUE)
            .map_err(db_err)?
            .insert((due, key), ())
            .map_err(db_err)?;
    }
    if d.pending {
        tx.open_table(PENDING)
            .map_err(db_err)?
            .insert(key, ())
            .map_err(db_err)?;
    }
    tx.open_table(CREATED)
        .map_err(db_err)?
        .insert((d.created_ms, key), ())
        .map_err(db_err)?;
    tx.open_table(BY_SUBJECT)
        .map_err(db_err)?
        .insert((d.subject, d.created_ms, key), ())
        .map_err(db_err)?;
    tx.open_table(BY_STATE)
        .map_err(db_err)?
        .insert((d.state, d.created_ms, key), ())
        .map_err(db_err)?;
    if let Some(alert) = d.alert_id {
        tx.open_table(BY_ALERT)
            .map_err(db_err)?
            .insert((alert, d.created_ms, key), ())
            .map_err(db_err)?;
    }
    Ok(())
}

/// Remove `key`'s entries from the indexes derived from `d` (its previous version). The alert index
/// keeps its entries: they include linked alerts, which are never unlinked.
fn index_remove(tx: &WriteTransaction, d: &Derived<'_>, key: &str) -> Result<(), StoreError> {
    if let Some(due) = d.due_ms {
        tx.open_table(DUE)
            .map_err(db_err)?
            .remove((due, key))
            .map_err(db_err)?;
    }
    if d.pending {
        tx.open_table(PENDING)
            .map_err(db_err)?
            .remove(key)
            .map_err(db_err)?;
    }
    tx.open_table(CREATED)
        .map_err(db_err)?
        .remove((d.created_ms, key))
        .map_err(db_err)?;
    tx.open_table(BY_SUBJECT)
        .map_err(db_err)?
        .remove((d.subject, d.created_ms, key))
        .map_err(db_err)?;
    tx.open_table(BY_STATE)
        .map_err(db_err)?
        .remove((d.state, d.created_ms, key))
        .map_err(db_err)?;
    Ok(())
}

fn insert_tx(
    db: &Database,
    action: &ActionRecord,
    window_ms: i64,
    linked_alert: Option<&str>,
) -> Result<Inserted, StoreError> {
    let now = now_ms();
    let tx = db.begin_write().map_err(db_err)?;
    let key = action.key.as_str();
    let d = Derived::of(action);
    let mut superseded = None;
    {
        let mut records = tx.open_table(RECORDS).map_err(db_err)?;
        if records.get(key).map_err(db_err)?.is_some() {
            drop(records);
            tx.abort().map_err(db_err)?;
            return Ok(Inserted::Duplicate);
        }

        let mut coalesce = tx.open_table(COALESCE).map_err(db_err)?;
        let holder = coalesce
            .get(d.coalesce.as_str())
            .map_err(db_err)?
            .and_then(|g| {
                let (holder, expires) = g.value();
                (expires > now).then(|| holder.to_string())
            });
        if let Some(holder) = holder {
            let live = match records.get(holder.as_str()).map_err(db_err)? {
                Some(g) => Some(decode(&holder, g.value())?),
                None => None,
            };
            if live
                .as_ref()
                .is_some_and(|h| h.state.superseded_by(action.state))
            {
                superseded = Some(holder.clone());
            }
            let live = live.filter(|h| h.state.absorbs(action.state));
            if let Some(mut live) = live {
                if let Some(alert) = linked_alert {
                    if !live.linked_alerts.iter().any(|l| l == alert) {
                        live.linked_alerts.push(alert.to_string());
                        records
                            .insert(holder.as_str(), encode(&live)?.as_slice())
                            .map_err(db_err)?;
                        tx.open_table(BY_ALERT)
                            .map_err(db_err)?
                            .insert(
                                (alert, live.created_at.timestamp_millis(), holder.as_str()),
                                (),
                            )
                            .map_err(db_err)?;
                    }
                }
                drop((records, coalesce));
                tx.commit().map_err(db_err)?;
                return Ok(Inserted::Coalesced(holder));
            }
        }

        records
            .insert(key, encode(action)?.as_slice())
            .map_err(db_err)?;
        if d.absorbs && window_ms > 0 {
            coalesce
                .insert(d.coalesce.as_str(), (key, now.saturating_add(window_ms)))
                .map_err(db_err)?;
        }
    }
    index_add(&tx, &d, key)?;
    tx.commit().map_err(db_err)?;
    Ok(superseded.map_or(Inserted::New, Inserted::Superseded))
}

fn put_tx(db: &Database, mut action: ActionRecord) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(db_err)?;
    let key = action.key.clone();
    let old = {
        let records = tx.open_table(RECORDS).map_err(db_err)?;
        let found = records.get(key.as_str()).map_err(db_err)?;
        match found {
            Some(g) => decode(&key, g.value())?,
            None => {
                drop(found);
                drop(records);
                tx.abort().map_err(db_err)?;
                return Err(StoreError::Other(format!(
                    "cannot update action `{key}`: no such action (insert it with insert_action first)"
                )));
            }
        }
    };
    // Linked alerts are append-only: keep any linked since the caller read the record.
    for l in old.linked_alerts.iter() {
        if !action.linked_alerts.contains(l) {
            action.linked_alerts.push(l.clone());
        }
    }
    let od = Derived::of(&old);
    let nd = Derived::of(&action);
    index_remove(&tx, &od, &key)?;
    index_add(&tx, &nd, &key)?;
    tx.open_table(RECORDS)
        .map_err(db_err)?
        .insert(key.as_str(), encode(&action)?.as_slice())
        .map_err(db_err)?;
    if !nd.absorbs {
        let mut coalesce = tx.open_table(COALESCE).map_err(db_err)?;
        let held_by_us = coalesce
            .get(nd.coalesce.as_str())
            .map_err(db_err)?
            .is_some_and(|g| g.value().0 == key);
        if held_by_us {
            coalesce.remove(nd.coalesce.as_str()).map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(())
}

fn list_tx(db: &Database, filter: &ActionFilter) -> Result<Vec<ActionRecord>, StoreError> {
    let tx = db.begin_read().map_err(db_err)?;
    let records = tx.open_table(RECORDS).map_err(db_err)?;
    let limit = effective_limit(filter.limit);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // Returns true once the listing is full.
    let mut consider = |key: &str| -> Result<bool, StoreError> {
        if let Some(g) = records.get(key).map_err(db_err)? {
            let a = decode(key, g.value())?;
            if matches(filter, &a) {
                out.push(a);
            }
        }
        Ok(out.len() >= limit)
    };
    // Walk the narrowest index the filter allows, newest first.
    let by: Option<(SecondaryIndex, &str)> = if let Some(alert) = filter.alert_id.as_deref() {
        Some((BY_ALERT, alert))
    } else if let Some(subject) = filter.subject.as_deref() {
        Some((BY_SUBJECT, subject))
    } else {
        filter.state.map(|s| (BY_STATE, s.as_str()))
    };
    match by {
        Some((table, value)) => {
            let index = tx.open_table(table).map_err(db_err)?;
            // An alert can be indexed twice for one action (caused, then linked): list it once.
            let mut seen = std::collections::HashSet::new();
            for entry in index
                .range((value, i64::MIN, "")..(value, i64::MAX, ""))
                .map_err(db_err)?
                .rev()
            {
                let (k, _) = entry.map_err(db_err)?;
                let (_, _, key) = k.value();
                if seen.insert(key.to_string()) && consider(key)? {
                    break;
                }
            }
        }
        None => {
            let index = tx.open_table(CREATED).map_err(db_err)?;
            for entry in index.iter().map_err(db_err)?.rev() {
                let (k, _) = entry.map_err(db_err)?;
                if consider(k.value().1)? {
                    break;
                }
            }
        }
    }
    Ok(out)
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

    async fn insert_action(
        &self,
        action: &ActionRecord,
        coalesce_window: Duration,
        linked_alert: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let action = action.clone();
        let linked = linked_alert.map(str::to_string);
        let window_ms = duration_ms(coalesce_window);
        self.run(move |db| insert_tx(db, &action, window_ms, linked.as_deref()))
            .await
    }

    async fn get_action(&self, key: &str) -> Result<Option<ActionRecord>, StoreError> {
        let key = key.to_string();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let records = tx.open_table(RECORDS).map_err(db_err)?;
            let found = records.get(key.as_str()).map_err(db_err)?;
            found.map(|g| decode(&key, g.value())).transpose()
        })
        .await
    }

    async fn put_action(&self, action: &ActionRecord) -> Result<(), StoreError> {
        let action = action.clone();
        self.run(move |db| put_tx(db, action)).await
    }

    async fn due_actions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let now = now.timestamp_millis();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let due = tx.open_table(DUE).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in due
                .range((i64::MIN, "")..(now.saturating_add(1), ""))
                .map_err(db_err)?
                .take(limit)
            {
                let (k, _) = entry.map_err(db_err)?;
                out.push(k.value().1.to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.run(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            let due = tx.open_table(DUE).map_err(db_err)?;
            match due.first().map_err(db_err)? {
                Some((k, _)) => from_ms(k.value().0).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = key.to_string();
        let owner = owner.to_string();
        let ttl_ms = duration_ms(ttl).max(1);
        self.run(move |db| {
            let now = now_ms();
            let tx = db.begin_write().map_err(db_err)?;
            let taken = {
                let mut claims = tx.open_table(CLAIMS).map_err(db_err)?;
                let held = claims
                    .get(key.as_str())
                    .map_err(db_err)?
                    .is_some_and(|g| g.value().1 > now);
                if !held {
                    claims
                        .insert(key.as_str(), (owner.as_str(), now.saturating_add(ttl_ms)))
                        .map_err(db_err)?;
                }
                !held
            };
            if taken {
                tx.commit().map_err(db_err)?;
            } else {
                tx.abort().map_err(db_err)?;
            }
            Ok(taken)
        })
        .await
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        let owner = owner.to_string();
        self.run(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            let ours = {
                let mut claims = tx.open_table(CLAIMS).map_err(db_err)?;
                let ours = claims
                    .get(key.as_str())
                    .map_err(db_err)?
                    .is_some_and(|g| g.value().0 == owner);
                if ours {
                    claims.remove(key.as_str()).map_err(db_err)?;
                }
                ours
            };
            if ours {
                tx.commit().map_err(db_err)?;
            } else {
                tx.abort().map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_actions(&self, filter: &ActionFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let filter = filter.clone();
        self.run(move |db| list_tx(db, &filter)).await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.run(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            tx.open_table(PENDING)
                .map_err(db_err)?
                .len()
                .map_err(db_err)
        })
        .await
    }

    async fn put_json(
        &self,
        ns: &str,
        key: &str,
        doc: &serde_json::Value,
        only_if_absent: bool,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let (ns, key) = (ns.to_string(), key.to_string());
        let bytes = serde_json::to_vec(doc)
            .map_err(|e| StoreError::Other(format!("cannot encode document `{ns}/{key}`: {e}")))?;
        self.run(move |db| {
            let now = now_ms();
            let expires = ttl.map_or(0, |t| now.saturating_add(duration_ms(t).max(1)));
            let tx = db.begin_write().map_err(db_err)?;
            let written = {
                let mut docs = tx.open_table(DOCS).map_err(db_err)?;
                let live = docs
                    .get((ns.as_str(), key.as_str()))
                    .map_err(db_err)?
                    .is_some_and(|g| {
                        let (exp, _) = g.value();
                        exp == 0 || exp > now
                    });
                if only_if_absent && live {
                    false
                } else {
                    docs.insert((ns.as_str(), key.as_str()), (expires, bytes.as_slice()))
                        .map_err(db_err)?;
                    true
                }
            };
            if written {
                tx.commit().map_err(db_err)?;
            } else {
                tx.abort().map_err(db_err)?;
            }
            Ok(written)
        })
        .await
    }

    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<Vec<AuditRecord>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        self.run(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            let sealed = {
                let mut meta = tx.open_table(AUDIT_META).map_err(db_err)?;
                let head = match meta.get("head").map_err(db_err)? {
                    Some(g) => parse_head(g.value())?,
                    None => None,
                };
                let sealed = seal_all(drafts, head.as_ref());
                let mut records = tx.open_table(AUDIT).map_err(db_err)?;
                for r in &sealed {
                    let json = serde_json::to_vec(r).map_err(|e| {
                        StoreError::Other(format!("cannot encode audit record {}: {e}", r.seq))
                    })?;
                    records.insert(r.seq, json.as_slice()).map_err(db_err)?;
                }
                let new_head = head_string(
                    sealed
                        .last()
                        .map(|r| AuditHead {
                            seq: r.seq,
                            hash: r.hash.clone(),
                        })
                        .as_ref(),
                );
                meta.insert("head", new_head.as_str()).map_err(db_err)?;
                sealed
            };
            tx.commit().map_err(db_err)?;
            Ok(sealed)
        })
        .await
    }

    async fn get_json(&self, ns: &str, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let (ns, key) = (ns.to_string(), key.to_string());
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let docs = tx.open_table(DOCS).map_err(db_err)?;
            let Some(g) = docs.get((ns.as_str(), key.as_str())).map_err(db_err)? else {
                return Ok(None);
            };
            let (exp, bytes) = g.value();
            if exp != 0 && exp <= now_ms() {
                return Ok(None);
            }
            serde_json::from_slice(bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key: format!("{ns}/{key}"),
                    reason: format!("not a JSON document: {e}"),
                })
        })
        .await
    }

    async fn audit_range(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = effective_limit(limit);
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let records = tx.open_table(AUDIT).map_err(db_err)?;
            let mut out = Vec::new();
            // Stored order is by seq; a deleted record leaves a gap that `verify` reports.
            for entry in records
                .range(from_seq.max(1)..)
                .map_err(db_err)?
                .take(limit)
            {
                let (k, v) = entry.map_err(db_err)?;
                let r = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    key: format!("audit record at position {}", k.value()),
                    reason: format!("not a valid audit record: {e}"),
                })?;
                out.push(r);
            }
            Ok(out)
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        self.run(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            let meta = tx.open_table(AUDIT_META).map_err(db_err)?;
            match meta.get("head").map_err(db_err)? {
                Some(g) => parse_head(g.value()),
                None => Ok(None),
            }
        })
        .await
    }

    async fn breaker_admit(
        &self,
        scopes: &[BreakerScope],
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<BreakerAdmission>, StoreError> {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        let scopes = scopes.to_vec();
        let subject = subject.to_string();
        let now_ms = now.timestamp_millis();
        self.run(move |db| breaker_admit_tx(db, &scopes, &subject, now_ms))
            .await
    }

    async fn breaker_reset(&self, scopes: &[String]) -> Result<Vec<String>, StoreError> {
        let scopes = scopes.to_vec();
        self.run(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            let mut was_open = Vec::new();
            for s in &scopes {
                breaker_prune(&tx, s, i64::MAX)?;
                tx.open_table(BREAKER_COUNTS)
                    .map_err(db_err)?
                    .remove(s.as_str())
                    .map_err(db_err)?;
                if tx
                    .open_table(BREAKER_OPEN)
                    .map_err(db_err)?
                    .remove(s.as_str())
                    .map_err(db_err)?
                    .is_some()
                {
                    was_open.push(s.clone());
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(was_open)
        })
        .await
    }

    async fn breaker_status(
        &self,
        scopes: &[BreakerScope],
        now: DateTime<Utc>,
    ) -> Result<Vec<BreakerState>, StoreError> {
        let scopes = scopes.to_vec();
        let now_ms = now.timestamp_millis();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let times = tx.open_table(BREAKER_TIMES).map_err(db_err)?;
            let open_t = tx.open_table(BREAKER_OPEN).map_err(db_err)?;
            let mut out = Vec::with_capacity(scopes.len());
            for s in &scopes {
                let cutoff = now_ms.saturating_sub(duration_ms(s.window).max(1));
                let mut subjects = 0u64;
                for entry in times
                    .range(
                        (s.name.as_str(), cutoff.saturating_add(1), "")
                            ..(s.name.as_str(), i64::MAX, ""),
                    )
                    .map_err(db_err)?
                {
                    entry.map_err(db_err)?;
                    subjects += 1;
                }
                let opened = open_t
                    .get(s.name.as_str())
                    .map_err(db_err)?
                    .map(|g| g.value());
                out.push(BreakerState {
                    scope: s.name.clone(),
                    open: opened.is_some(),
                    opened_at: opened.map(from_ms).transpose()?,
                    subjects,
                    threshold: s.threshold,
                    window: s.window,
                });
            }
            Ok(out)
        })
        .await
    }
}

/// Drop every window entry of `scope` admitted before `until_ms` (exclusive); returns how many.
fn breaker_prune(tx: &WriteTransaction, scope: &str, until_ms: i64) -> Result<u64, StoreError> {
    let mut times = tx.open_table(BREAKER_TIMES).map_err(db_err)?;
    let mut subjects = tx.open_table(BREAKER_SUBJECTS).map_err(db_err)?;
    let mut stale = Vec::new();
    for entry in times
        .range((scope, i64::MIN, "")..(scope, until_ms, ""))
        .map_err(db_err)?
    {
        let (k, _) = entry.map_err(db_err)?;
        let (_, ms, subject) = k.value();
        stale.push((ms, subject.to_string()));
    }
    for (ms, subject) in &stale {
        times
            .remove((scope, *ms, subject.as_str()))
            .map_err(db_err)?;
        subjects.remove((scope, subject.as_str())).map_err(db_err)?;
    }
    Ok(stale.len() as u64)
}

fn breaker_admit_tx(
    db: &Database,
    scopes: &[BreakerScope],
    subject: &str,
    now_ms: i64,
) -> Result<Vec<BreakerAdmission>, StoreError> {
    let tx = db.begin_write().map_err(db_err)?;
    let mut out = Vec::with_capacity(scopes.len());
    for s in scopes {
        let cutoff = now_ms.saturating_sub(duration_ms(s.window).max(1));
        let pruned = breaker_prune(&tx, &s.name, cutoff.saturating_add(1))?;
        let mut counts = tx.open_table(BREAKER_COUNTS).map_err(db_err)?;
        let mut count = counts
            .get(s.name.as_str())
            .map_err(db_err)?
            .map_or(0, |g| g.value())
            .saturating_sub(pruned);
        {
            let mut subjects = tx.open_table(BREAKER_SUBJECTS).map_err(db_err)?;
            let mut times = tx.open_table(BREAKER_TIMES).map_err(db_err)?;
            let previous = subjects
                .insert((s.name.as_str(), subject), now_ms)
                .map_err(db_err)?
                .map(|g| g.value());
            match previous {
                Some(ms) => {
                    times
                        .remove((s.name.as_str(), ms, subject))
                        .map_err(db_err)?;
                }
                None => count += 1,
            }
            times
                .insert((s.name.as_str(), now_ms, subject), ())
                .map_err(db_err)?;
        }
        counts.insert(s.name.as_str(), count).map_err(db_err)?;
        let mut open_t = tx.open_table(BREAKER_OPEN).map_err(db_err)?;
        let mut open = open_t.get(s.name.as_str()).map_err(db_err)?.is_some();
        let mut tripped = false;
        if !open && count > s.threshold {
            open_t.insert(s.name.as_str(), now_ms).map_err(db_err)?;
            open = true;
            tripped = true;
        }
        out.push(BreakerAdmission {
            scope: s.name.clone(),
            subjects: count,
            open,
            tripped,
        });
    }
    tx.commit().map_err(db_err)?;
    Ok(out)
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
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::store::conformance;

    /// A fresh store in a temporary directory (kept alive by the returned guard).
    fn fresh() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        (dir, store)
    }

    macro_rules! conformance_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_dir, store) = fresh();
                let store: Arc<dyn StateStore> = Arc::new(store);
                conformance::$name(store).await;
            }
        )*};
    }

    conformance::for_each_case!(conformance_tests);

    #[tokio::test]
    async fn reopening_after_drop_sees_every_committed_record_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let (a, b) = (
            conformance::record("a", "alice", now),
            conformance::record("b", "bob", now),
        );
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store
                .insert_action(&a, Duration::from_secs(60), None)
                .await
                .unwrap();
            store
                .insert_action(&b, Duration::from_secs(60), None)
                .await
                .unwrap();
            store
                .claim(&a.key, "worker-1", Duration::from_secs(60))
                .await
                .unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get_action(&a.key).await.unwrap(), Some(a.clone()));
        assert_eq!(store.get_action(&b.key).await.unwrap(), Some(b.clone()));
        assert_eq!(store.pending_count().await.unwrap(), 2);
        assert_eq!(store.due_actions(now, 10).await.unwrap().len(), 2);
        assert!(
            !store
                .claim(&a.key, "worker-2", Duration::from_secs(60))
                .await
                .unwrap()
        );
        // The coalesce slot survived too.
        let c = conformance::record("c", "alice", now);
        assert_eq!(
            store
                .insert_action(&c, Duration::from_secs(60), None)
                .await
                .unwrap(),
            Inserted::Coalesced(a.key.clone())
        );
    }

    #[tokio::test]
    async fn failed_action_removes_its_coalesce_slot_but_succeeded_keeps_it() {
        // The insert also ignores a slot whose holder no longer absorbs, so the conformance suite
        // cannot see the slot itself; this checks the table directly.
        let (_dir, store) = fresh();
        let now = Utc::now();
        let mut a = conformance::record("a", "alice", now);
        let mut b = conformance::record("b", "bob", now);
        for r in [&a, &b] {
            store
                .insert_action(r, Duration::from_secs(60), None)
                .await
                .unwrap();
        }
        let has_slot = |r: &ActionRecord| {
            let tx = store.db.begin_read().unwrap();
            let slots = tx.open_table(COALESCE).unwrap();
            slots
                .get(Derived::of(r).coalesce.as_str())
                .unwrap()
                .is_some()
        };
        assert!(has_slot(&a) && has_slot(&b));
        a.state = crate::ledger::ActionState::Failed;
        b.state = crate::ledger::ActionState::Succeeded;
        store.put_action(&a).await.unwrap();
        store.put_action(&b).await.unwrap();
        assert!(!has_slot(&a), "failed action kept its coalesce slot");
        assert!(has_slot(&b), "succeeded action lost its coalesce slot");
    }

    /// Environment variable that turns [`crash_child_writes_then_aborts`] into a real crash.
    const CRASH_DIR_ENV: &str = "DEPROVD_LEDGER_CRASH_DIR";

    /// Child half of [`committed_records_survive_a_process_abort`]: a no-op unless started by it.
    #[test]
    fn crash_child_writes_then_aborts() {
        let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
            return;
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = EmbeddedStore::open(Path::new(&dir)).unwrap();
            let now = Utc::now();
            for i in 0..20 {
                let r = conformance::record(&format!("crash-{i}"), &format!("user-{i}"), now);
                assert_eq!(
                    store
                        .insert_action(&r, Duration::from_secs(60), None)
                        .await
                        .unwrap(),
                    Inserted::New
                );
            }
        });
        // No destructors, no clean shutdown: as if the process were killed.
        std::process::abort();
    }

    #[tokio::test]
    async fn committed_records_survive_a_process_abort() {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ledger::store::embedded::tests::crash_child_writes_then_aborts",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child was meant to abort");

        let store = EmbeddedStore::open(dir.path()).unwrap();
        let now = Utc::now();
        for i in 0..20 {
            let want = conformance::record(&format!("crash-{i}"), &format!("user-{i}"), now);
            let got = store.get_action(&want.key).await.unwrap();
            assert!(got.is_some(), "record crash-{i} was committed but is gone");
        }
        assert_eq!(store.pending_count().await.unwrap(), 20);
    }

    #[tokio::test]
    async fn edited_deleted_and_swapped_audit_records_in_the_file_are_named() {
        use crate::audit::{Actor, AuditDraft, AuditKind, Tamper, Verifier, verify};
        let (_dir, store) = fresh();
        let drafts = (0..5)
            .map(|i| {
                AuditDraft::new(
                    AuditKind::Guard,
                    Actor::system("t"),
                    serde_json::json!({"i": i}),
                )
            })
            .collect();
        let orig = store.append_audit(drafts).await.unwrap();
        let bytes = |r: &AuditRecord| serde_json::to_vec(r).unwrap();

        let mut edited = orig[2].clone();
        edited.detail["i"] = 42.into();
        store.tamper_audit(3, Some(&bytes(&edited)));
        let e = verify(&store.audit_range(1, 0).await.unwrap()).unwrap_err();
        assert_eq!(e.seq, 3);
        assert!(matches!(e.tamper, Tamper::Edited { .. }), "{e}");
        store.tamper_audit(3, Some(&bytes(&orig[2])));

        store.tamper_audit(2, None);
        let e = verify(&store.audit_range(1, 0).await.unwrap()).unwrap_err();
        assert_eq!((e.seq, e.tamper), (2, Tamper::Missing { found: 3 }));
        store.tamper_audit(2, Some(&bytes(&orig[1])));

        store.tamper_audit(4, Some(&bytes(&orig[4])));
        store.tamper_audit(5, Some(&bytes(&orig[3])));
        let e = verify(&store.audit_range(1, 0).await.unwrap()).unwrap_err();
        assert_eq!((e.seq, e.tamper), (4, Tamper::Missing { found: 5 }));
        store.tamper_audit(4, Some(&bytes(&orig[3])));
        store.tamper_audit(5, Some(&bytes(&orig[4])));

        store.tamper_audit(5, None);
        let mut v = Verifier::new();
        for r in &store.audit_range(1, 0).await.unwrap() {
            v.feed(r).unwrap();
        }
        let head = store.audit_head().await.unwrap();
        let e = v.finish(head.as_ref()).unwrap_err();
        assert_eq!(
            (e.seq, e.tamper),
            (5, Tamper::Truncated { last: 4, head: 5 })
        );
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_dir_is_refused_with_a_clear_error() {
        let (dir, _store) = fresh();
        let err = EmbeddedStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("already open"), "{err}");
    }
}
