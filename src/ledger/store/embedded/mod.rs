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
mod audit;
mod breaker;
mod docs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use super::{
    Derived, LANE_SPAN_MS, decode, effective_limit, encode, from_ms, head_string, lane_score,
    matches, parse_head,
};
use crate::audit::{AuditDraft, AuditHead, AuditRecord, seal_all};
use crate::ledger::{
    ActionFilter, ActionRecord, BreakerAdmission, BreakerScope, BreakerState, Inserted, LaneDue,
    StateStore, StoreError, Urgency,
};

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
}

/// Give every due action its lane entry: a ledger written before lanes existed has due actions
/// that no lane holds, and the executor claims only through lanes. Cheap when nothing is missing
/// (one lookup per due action, and the due index holds only unfinished work).
fn index_lanes(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    {
        let due = tx.open_table(DUE).map_err(db_err)?;
        let records = tx.open_table(RECORDS).map_err(db_err)?;
        let lanes = tx.open_table(LANES).map_err(db_err)?;
        for entry in due.iter().map_err(db_err)? {
            let (k, _) = entry.map_err(db_err)?;
            let key = k.value().1;
            let Some(g) = records.get(key).map_err(db_err)? else {
                continue;
            };
            let rec = decode(key, g.value())?;
            let d = Derived::of(&rec);
            if let Some(score) = d.lane_score()
                && lanes
                    .get((d.connector, score, key))
                    .map_err(db_err)?
                    .is_none()
            {
                missing.push((rec.connector.clone(), score, key.to_string()));
            }
        }
    }
    let mut lanes = tx.open_table(LANES).map_err(db_err)?;
    for (connector, score, key) in &missing {
        lanes
            .insert((connector.as_str(), *score, key.as_str()), ())
            .map_err(db_err)?;
    }
    Ok(())
}

/// Add `key`'s entries to every index derived from `d`.
fn index_add(tx: &WriteTransaction, d: &Derived<'_>, key: &str) -> Result<(), StoreError> {
    if let Some(due) = d.due_ms {
        tx.open_table(DUE)
            .map_err(db_err)?
            .insert((due, key), ())
            .map_err(db_err)?;
    }
    if let Some(score) = d.lane_score() {
        tx.open_table(LANES)
            .map_err(db_err)?
            .insert((d.connector, score, key), ())
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
    if let Some(score) = d.lane_score() {
        tx.open_table(LANES)
            .map_err(db_err)?
            .remove((d.connector, score, key))
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

/// One claim round ([`ActionStore::claim_lanes`](crate::ledger::ActionStore::claim_lanes)) in one
/// write transaction: for each lane, walk its ranks most urgent first and take the due actions no
/// live claim holds, then measure what is left.
fn claim_lanes_tx(
    db: &Database,
    lanes: &[(String, usize)],
    now: i64,
    owner: &str,
    ttl_ms: i64,
) -> Result<Vec<LaneDue>, StoreError> {
    let tx = db.begin_write().map_err(db_err)?;
    let mut out = Vec::with_capacity(lanes.len());
    {
        let index = tx.open_table(LANES).map_err(db_err)?;
        let mut claims = tx.open_table(CLAIMS).map_err(db_err)?;
        for (connector, limit) in lanes {
            let c = connector.as_str();
            let mut claimed = Vec::new();
            let (mut due, mut oldest, mut next) = (0u64, None::<i64>, None::<i64>);
            for rank in 0..Urgency::LEVELS {
                let base = lane_score(rank, 0);
                let due_end = lane_score(rank, now).saturating_add(1);
                for entry in index
                    .range((c, base, "")..(c, due_end, ""))
                    .map_err(db_err)?
                {
                    let (k, _) = entry.map_err(db_err)?;
                    let (_, score, key) = k.value();
                    due += 1;
                    oldest = Some(oldest.map_or(score - base, |o| o.min(score - base)));
                    if claimed.len() >= *limit {
                        continue;
                    }
                    let held = claims
                        .get(key)
                        .map_err(db_err)?
                        .is_some_and(|g| g.value().1 > now);
                    if !held {
                        claims
                            .insert(key, (owner, now.saturating_add(ttl_ms)))
                            .map_err(db_err)?;
                        claimed.push(key.to_string());
                    }
                }
                let first_later = index
                    .range((c, due_end, "")..(c, base + LANE_SPAN_MS, ""))
                    .map_err(db_err)?
                    .next();
                if let Some(entry) = first_later {
                    let at = entry.map_err(db_err)?.0.value().1 - base;
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            out.push(LaneDue {
                waiting: due - claimed.len() as u64,
                claimed,
                oldest_due: oldest.map(from_ms).transpose()?,
                next_due: next.map(from_ms).transpose()?,
            });
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(out)
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
mod tests;
