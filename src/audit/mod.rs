//! The tamper-evident audit trail: every alert received, decision, action state change, API call,
//! guard event, policy reload and startup is an append-only [`AuditRecord`] chained by SHA-256 to the
//! one before it.
//!
//! # Why a hash chain
//!
//! Records are appended in batches (an alert's records; everything one group commit writes), and
//! each batch is sealed by one SHA-256 that covers its records and the seal of the batch before.
//! Editing a record changes its batch's seal; deleting or reordering records breaks the `seq` run or
//! a `prev` link. [`verify`] walks the chain and names the first bad record (for an edit: the first
//! record of the batch whose seal no longer matches). The chain cannot stop someone who rewrites
//! *every* later record (and the head); mirror the head elsewhere (a log shipper, a Kafka topic) to
//! anchor it.
//!
//! # Two record formats, one chain
//!
//! - **Batch-sealed** (`"v": 2`, written today; see [`batch`]): every record of a batch carries the
//!   same `prev` — the seal of the batch before — and only the batch's **last** record carries
//!   `hash`, the hex SHA-256 of the batch's records' canonical bytes, each followed by `\n`. A
//!   record's canonical bytes are `serde_json` of [`Canonical`]: every field but `hash`, `v` last.
//!   One hash and one serialization per record (the stored bytes *are* the canonical bytes, the
//!   seal's with `hash` spliced in), where the first format paid a hash and two serializations each.
//! - **Record-sealed** (no `v`, written before; still verified): every record carries `prev` (the
//!   hash of the record before) and `hash`, the SHA-256 of its [`Canonical`] bytes (without `v`).
//!
//! A trail may hold both: the first batch written by a newer deprovd chains onto the last
//! record-sealed record's hash, so an upgraded deployment keeps one verifiable chain. `detail` is a
//! `serde_json::Value` whose object keys serialize in a deterministic order (sorted, or document
//! order once parsed back), so a record read back from the store hashes to the bytes it was sealed
//! with.
//!
//! # Who assigns `seq` and `prev`
//!
//! The [`StateStore`](crate::ledger::StateStore) does, atomically with the append
//! ([`append_audit`](crate::ledger::StateStore::append_audit)), so that several replicas appending at
//! once still form one chain. This module only defines the record, seals it and verifies chains; it
//! depends on nothing else in the crate.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) mod batch;

pub(crate) use batch::seal_batch;

/// `prev` of the first record: 64 zeros.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An alert entered the pipeline (accepted or rejected).
    AlertReceived,
    /// The policy decisions on one alert and what became of them in the ledger, batched.
    Decision,
    /// An action changed state in the executor (running, succeeded, failed, retry, skipped).
    ActionState,
    /// An authenticated API call: who, with which role, from where, what.
    ApiCall,
    /// A guard (protected subject, dry-run, approval hold) changed what a policy asked for.
    Guard,
    /// The policy bundle changed (or a reload was rejected).
    PolicyReload,
    /// Service configuration events (startup with its digest and backend).
    Config,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::AlertReceived => "alert_received",
            AuditKind::Decision => "decision",
            AuditKind::ActionState => "action_state",
            AuditKind::ApiCall => "api_call",
            AuditKind::Guard => "guard",
            AuditKind::PolicyReload => "policy_reload",
            AuditKind::Config => "config",
        }
    }
}

/// Who caused the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    /// Token name for API callers; `kafka`/`http`/`executor`/`deprovd` for the service itself.
    pub name: String,
    /// API role of the caller (`None` for the service itself).
    #[serde(default)]
    pub role: Option<String>,
    /// Peer address of an API call.
    #[serde(default)]
    pub source: Option<String>,
}

impl Actor {
    /// The service acting on its own (`executor`, `kafka`, `deprovd`).
    pub fn system(name: &str) -> Actor {
        Actor {
            name: name.to_string(),
            role: None,
            source: None,
        }
    }
}

/// A record before the store has placed it in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub time: DateTime<Utc>,
    pub kind: AuditKind,
    pub actor: Actor,
    pub subject: Option<String>,
    pub alert_id: Option<String>,
    pub action_key: Option<String>,
    pub policy_digest: Option<String>,
    /// Kind-specific facts (decisions, state, status code). Never secrets.
    pub detail: serde_json::Value,
}

impl AuditDraft {
    /// A draft stamped now with no subject, alert, action or digest.
    pub fn new(kind: AuditKind, actor: Actor, detail: serde_json::Value) -> AuditDraft {
        AuditDraft {
            time: Utc::now(),
            kind,
            actor,
            subject: None,
            alert_id: None,
            action_key: None,
            policy_digest: None,
            detail,
        }
    }
}

/// One link of the chain, as stored and as served by `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditRecord {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub kind: AuditKind,
    pub actor: Actor,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub alert_id: Option<String>,
    #[serde(default)]
    pub action_key: Option<String>,
    #[serde(default)]
    pub policy_digest: Option<String>,
    #[serde(default)]
    pub detail: serde_json::Value,
    /// Record-sealed: `hash` of record `seq - 1`. Batch-sealed: the seal (`hash`) of the batch
    /// before. [`GENESIS`] at the start.
    pub prev: String,
    /// The record format: `2` for batch-sealed records, absent (`1`) for record-sealed ones.
    #[serde(default = "v1", skip_serializing_if = "is_v1")]
    pub v: u8,
    /// Record-sealed: hex SHA-256 of this record's [`canonical_bytes`](AuditRecord::canonical_bytes).
    /// Batch-sealed: the batch's seal on its last record, empty (absent) on the others.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

fn v1() -> u8 {
    1
}

fn is_v1(v: &u8) -> bool {
    *v == 1
}

/// The hashed form of a record: every field but `hash`, in the order the record is stored, with
/// `v` last for a batch-sealed record and left out for a record-sealed one (so format-1 bytes are
/// what they always were). Changing this struct changes every hash; add a format version instead.
#[derive(Serialize)]
pub(crate) struct Canonical<'a> {
    seq: u64,
    time: &'a DateTime<Utc>,
    kind: AuditKind,
    actor: &'a Actor,
    subject: &'a Option<String>,
    alert_id: &'a Option<String>,
    action_key: &'a Option<String>,
    policy_digest: &'a Option<String>,
    detail: &'a serde_json::Value,
    prev: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<u8>,
}

impl<'a> Canonical<'a> {
    /// The canonical view of `r` (its `hash` left out) with format `v` (`None`: record-sealed).
    fn of(r: &'a AuditRecord, v: Option<u8>) -> Self {
        Canonical {
            seq: r.seq,
            time: &r.time,
            kind: r.kind,
            actor: &r.actor,
            subject: &r.subject,
            alert_id: &r.alert_id,
            action_key: &r.action_key,
            policy_digest: &r.policy_digest,
            detail: &r.detail,
            prev: &r.prev,
            v,
        }
    }

    /// `r` as a batch-sealed record (format 2): what the batch seal covers, and but for the seal
    /// its stored form.
    pub(crate) fn batch_sealed(r: &'a AuditRecord) -> Self {
        Self::of(r, Some(2))
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data (strings, numbers, a `Value`) into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl AuditRecord {
    /// Place `draft` in the chain at `seq` after a record whose hash is `prev`, and compute its hash
    /// (the record-sealed format, see [`seal_all`]).
    #[cfg(test)]
    pub(crate) fn seal(draft: AuditDraft, seq: u64, prev: &str) -> AuditRecord {
        let mut r = AuditRecord {
            seq,
            time: draft.time,
            kind: draft.kind,
            actor: draft.actor,
            subject: draft.subject,
            alert_id: draft.alert_id,
            action_key: draft.action_key,
            policy_digest: draft.policy_digest,
            detail: draft.detail,
            prev: prev.to_string(),
            v: 1,
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        r
    }

    /// The bytes a record-sealed record's hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        Canonical::of(self, None).to_bytes()
    }

    /// Whether this record seals everything before it in the chain (a record-sealed record, or the
    /// last record of a batch): verification can start after it.
    pub fn seals(&self) -> bool {
        !self.hash.is_empty()
    }

    /// Hex SHA-256 of the record-sealed canonical bytes (for a batch-sealed record, use a
    /// [`Verifier`]: its seal covers its whole batch).
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }
}

/// Seal `drafts` as consecutive record-sealed (format 1) records after `head` (`None`: the chain
/// is empty): how trails were written before batch sealing; kept to show old trails still verify.
#[cfg(test)]
pub(crate) fn seal_all(drafts: Vec<AuditDraft>, head: Option<&AuditHead>) -> Vec<AuditRecord> {
    let (mut seq, mut prev) = match head {
        Some(h) => (h.seq, h.hash.clone()),
        None => (0, GENESIS.to_string()),
    };
    let mut out = Vec::with_capacity(drafts.len());
    for d in drafts {
        seq += 1;
        let r = AuditRecord::seal(d, seq, &prev);
        prev.clone_from(&r.hash);
        out.push(r);
    }
    out
}

/// The last record of the chain, as the store remembers it: lets `verify` notice records cut off the
/// end, and lets appenders chain without reading the last record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    /// Its content does not hash to its `hash`: it was edited.
    #[error("its content does not match its hash (edited): stored {stored}, computed {computed}")]
    Edited { stored: String, computed: String },
    /// A later record sits where this one should be: this one (and maybe more) was deleted.
    #[error("it is missing: record {found} sits in its place (deleted)")]
    Missing { found: u64 },
    /// An earlier record appears again where this one should be: records were reordered or copied.
    #[error("record {found} sits in its place (reordered or duplicated)")]
    OutOfOrder { found: u64 },
    /// Its `prev` is not the previous record's hash: a record before it was removed or replaced.
    #[error(
        "its prev {prev} is not the hash of record {before} ({expected}) (deleted or reordered)"
    )]
    BrokenLink {
        prev: String,
        before: u64,
        expected: String,
    },
    /// The chain ends before the head the store recorded: records were cut off the end.
    #[error("the chain ends at record {last} but the store's head is record {head} (deleted)")]
    Truncated { last: u64, head: u64 },
    /// The stored bytes are not a record at all.
    #[error("it is not a valid audit record: {0}")]
    Unreadable(String),
    /// A batch-sealed batch starting here does not hash to the seal on its last record (`last`):
    /// one of its records (or the seal) was edited.
    #[error(
        "the batch of records from it to {last} does not match its seal (edited): stored {stored}, computed {computed}"
    )]
    BatchEdited {
        last: u64,
        stored: String,
        computed: String,
    },
    /// A batch-sealed batch starting here has no seal: its last record was deleted or edited, or
    /// the chain was cut off inside it.
    #[error("the batch of records from it to {last} has no seal (its sealing record is gone)")]
    Unsealed { last: u64 },
}

/// The first bad record and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq} is bad: {tamper}")]
pub struct VerifyError {
    /// Sequence number of the first record that fails.
    pub seq: u64,
    pub tamper: Tamper,
}

/// Checks records one by one, so a long trail can be verified page by page.
#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    /// The next record's expected `seq`.
    next: u64,
    /// The next record's expected `prev`.
    prev: String,
    /// Records accepted so far.
    count: u64,
    /// The batch-sealed batch being read: its first seq and running hash, until its seal.
    batch: Option<(u64, Sha256)>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// Start at the genesis.
    pub(crate) fn new() -> Verifier {
        Verifier {
            next: 1,
            prev: GENESIS.to_string(),
            count: 0,
            batch: None,
        }
    }

    /// Start after `anchor`, trusted as read (for `--from SEQ`). The anchor must seal what came
    /// before it — a record-sealed record or the last record of a batch ([`AuditRecord::seals`]):
    /// a batch's seal covers all its records, so verification cannot start inside one.
    pub(crate) fn after(anchor: &AuditRecord) -> Verifier {
        Verifier {
            next: anchor.seq + 1,
            prev: anchor.hash.clone(),
            count: 0,
            batch: None,
        }
    }

    /// The expected `seq` of the next record.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    #[cfg(test)]
    /// Number of records accepted so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Accept the next record or say what is wrong with it.
    pub(crate) fn feed(&mut self, r: &AuditRecord) -> Result<(), VerifyError> {
        if r.v == 2 {
            return self.feed_batched(r);
        }
        if let Some((first, _)) = &self.batch {
            // A record-sealed record where the open batch's next record or seal should be.
            return Err(VerifyError {
                seq: *first,
                tamper: Tamper::Unsealed {
                    last: self.next - 1,
                },
            });
        }
        let computed = r.compute_hash();
        if computed != r.hash {
            return Err(VerifyError {
                seq: r.seq,
                tamper: Tamper::Edited {
                    stored: r.hash.clone(),
                    computed,
                },
            });
        }
        self.check_place(r)?;
        self.accept(r);
        Ok(())
    }

    /// A batch-sealed record: in its place, following the seal before its batch; the batch's
    /// running hash checked against the seal on its last record.
    fn feed_batched(&mut self, r: &AuditRecord) -> Result<(), VerifyError> {
        self.check_place(r)?;
        let bytes = Canonical::batch_sealed(r).to_bytes();
        let (first, hasher) = self.batch.get_or_insert_with(|| (r.seq, Sha256::new()));
        batch::absorb(hasher, &bytes);
        if !r.hash.is_empty() {
            let first = *first;
            let computed = self
                .batch
                .take()
                .map(|(_, h)| hex::encode(h.finalize()))
                .unwrap_or_default();
            if computed != r.hash {
                return Err(VerifyError {
                    seq: first,
                    tamper: Tamper::BatchEdited {
                        last: r.seq,
                        stored: r.hash.clone(),
                        computed,
                    },
                });
            }
            self.prev.clone_from(&r.hash);
        }
        self.next += 1;
        self.count += 1;
        Ok(())
    }

    /// `r` sits at the expected `seq` and links to the expected `prev`.
    fn check_place(&self, r: &AuditRecord) -> Result<(), VerifyError> {
        if r.seq > self.next {
            return Err(VerifyError {
                seq: self.next,
                tamper: Tamper::Missing { found: r.seq },
            });
        }
        if r.seq < self.next {
            return Err(VerifyError {
                seq: self.next,
                tamper: Tamper::OutOfOrder { found: r.seq },
            });
        }
        if r.prev != self.prev {
            return Err(VerifyError {
                seq: r.seq,
                tamper: Tamper::BrokenLink {
                    prev: r.prev.clone(),
                    before: r.seq - 1,
                    expected: self.prev.clone(),
                },
            });
        }
        Ok(())
    }

    /// A record-sealed record passed: it is the new link.
    fn accept(&mut self, r: &AuditRecord) {
        self.next += 1;
        self.prev.clone_from(&r.hash);
        self.count += 1;
    }

    /// After the last record: the store's head must be the last record accepted.
    pub(crate) fn finish(&self, head: Option<&AuditHead>) -> Result<u64, VerifyError> {
        let last = self.next - 1;
        if let Some(h) = head
            && h.seq > last
        {
            return Err(VerifyError {
                seq: self.next,
                tamper: Tamper::Truncated { last, head: h.seq },
            });
        }
        if let Some((first, _)) = &self.batch {
            return Err(VerifyError {
                seq: *first,
                tamper: Tamper::Unsealed { last },
            });
        }
        if let Some(h) = head
            && h.seq == last
            && h.hash != self.prev
        {
            return Err(VerifyError {
                seq: last,
                tamper: Tamper::Edited {
                    stored: self.prev.clone(),
                    computed: h.hash.clone(),
                },
            });
        }
        Ok(self.count)
    }
}

/// Verify a whole chain from the genesis (ending on a sealed batch); returns the number of
/// records verified.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Result<u64, VerifyError> {
    let mut v = Verifier::new();
    for r in records {
        v.feed(r)?;
    }
    v.finish(None)
}

/// Filter for `GET /v1/audit`; every set field must match.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditFilter {
    pub subject: Option<String>,
    pub alert_id: Option<String>,
    pub action_key: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub(crate) fn matches(&self, r: &AuditRecord) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        eq(&self.subject, &r.subject)
            && eq(&self.alert_id, &r.alert_id)
            && eq(&self.action_key, &r.action_key)
            && self.since.is_none_or(|t| r.time >= t)
            && self.until.is_none_or(|t| r.time <= t)
    }
}

#[cfg(test)]
mod tests;
