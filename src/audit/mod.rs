//! The tamper-evident audit trail: every alert received, decision, action state change, API call,
//! guard event, policy reload and startup is an append-only [`AuditRecord`] chained by SHA-256 to the
//! one before it.
//!
//! # Why a hash chain
//!
//! Each record carries `prev` (the hash of the previous record) and `hash` (the SHA-256 of its own
//! canonical bytes, which include `prev`). Editing a record changes its hash; deleting or reordering
//! records breaks a `prev` link or the `seq` run. [`verify`] walks the chain and names the first bad
//! record. The chain cannot stop someone who rewrites *every* later record (and the head); mirror the
//! head elsewhere (a log shipper, a Kafka topic) to anchor it.
//!
//! # Canonical bytes
//!
//! `serde_json` of [`Canonical`], a struct with a fixed field order that holds every field except
//! `hash`. `detail` is a `serde_json::Value` whose object keys serialize in a deterministic order
//! (sorted, or document order once parsed back), so a record read back from the store hashes to the
//! same bytes it was sealed with.
//!
//! # Who assigns `seq` and `prev`
//!
//! The [`StateStore`](crate::ledger::StateStore) does, atomically with the append
//! ([`append_audit`](crate::ledger::StateStore::append_audit)), so that several replicas appending at
//! once still form one chain. This module only defines the record, seals it and verifies chains; it
//! depends on nothing else in the crate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// `hash` of record `seq - 1`, or [`GENESIS`].
    pub prev: String,
    /// Hex SHA-256 of this record's [`canonical_bytes`](AuditRecord::canonical_bytes).
    pub hash: String,
}

/// The hashed form: every field but `hash`, in a fixed order. Changing this struct changes every
/// hash; add a version field first if it must ever change.
#[derive(Serialize)]
struct Canonical<'a> {
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
}

impl AuditRecord {
    /// Place `draft` in the chain at `seq` after a record whose hash is `prev`, and compute its hash.
    pub fn seal(draft: AuditDraft, seq: u64, prev: &str) -> AuditRecord {
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
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        r
    }

    /// The bytes the hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let c = Canonical {
            seq: self.seq,
            time: &self.time,
            kind: self.kind,
            actor: &self.actor,
            subject: &self.subject,
            alert_id: &self.alert_id,
            action_key: &self.action_key,
            policy_digest: &self.policy_digest,
            detail: &self.detail,
            prev: &self.prev,
        };
        // Serializing plain data (strings, numbers, a `Value`) into a Vec cannot fail.
        serde_json::to_vec(&c).unwrap_or_default()
    }

    /// Hex SHA-256 of the canonical bytes.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }
}

/// Seal `drafts` as consecutive records after `head` (`None`: the chain is empty).
pub fn seal_all(drafts: Vec<AuditDraft>, head: Option<&AuditHead>) -> Vec<AuditRecord> {
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
pub struct Verifier {
    /// The next record's expected `seq`.
    next: u64,
    /// The next record's expected `prev`.
    prev: String,
    /// Records accepted so far.
    count: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// Start at the genesis.
    pub fn new() -> Verifier {
        Verifier {
            next: 1,
            prev: GENESIS.to_string(),
            count: 0,
        }
    }

    /// Start after `anchor` (for `--from SEQ`: the anchor is record `SEQ - 1`, trusted as read).
    pub fn after(anchor: &AuditRecord) -> Verifier {
        Verifier {
            next: anchor.seq + 1,
            prev: anchor.hash.clone(),
            count: 0,
        }
    }

    /// The expected `seq` of the next record.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Number of records accepted so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Accept the next record or say what is wrong with it.
    pub fn feed(&mut self, r: &AuditRecord) -> Result<(), VerifyError> {
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
        self.next += 1;
        self.prev.clone_from(&r.hash);
        self.count += 1;
        Ok(())
    }

    /// After the last record: the store's head must be the last record accepted.
    pub fn finish(&self, head: Option<&AuditHead>) -> Result<u64, VerifyError> {
        if let Some(h) = head {
            let last = self.next - 1;
            if h.seq > last {
                return Err(VerifyError {
                    seq: self.next,
                    tamper: Tamper::Truncated { last, head: h.seq },
                });
            }
            if h.seq == last && h.hash != self.prev {
                return Err(VerifyError {
                    seq: last,
                    tamper: Tamper::Edited {
                        stored: self.prev.clone(),
                        computed: h.hash.clone(),
                    },
                });
            }
        }
        Ok(self.count)
    }
}

/// Verify a whole chain from the genesis; returns the number of records verified.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Result<u64, VerifyError> {
    let mut v = Verifier::new();
    for r in records {
        v.feed(r)?;
    }
    Ok(v.count())
}

/// Filter for `GET /v1/audit`; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub alert_id: Option<String>,
    pub action_key: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    pub fn matches(&self, r: &AuditRecord) -> bool {
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
mod tests {
    use super::*;

    fn draft(i: u32) -> AuditDraft {
        let mut d = AuditDraft::new(
            AuditKind::Decision,
            Actor::system("test"),
            serde_json::json!({"i": i, "z": [1.5, {"b": 1, "a": "ü"}]}),
        );
        d.subject = Some(format!("user{i}@corp.example"));
        d.alert_id = Some(format!("alert-{i}"));
        d
    }

    fn chain(n: u32) -> Vec<AuditRecord> {
        seal_all((1..=n).map(draft).collect(), None)
    }

    #[test]
    fn a_fresh_chain_starts_at_genesis_and_verifies() {
        let c = chain(5);
        assert_eq!(c[0].prev, GENESIS);
        assert_eq!(c[0].seq, 1);
        assert_eq!(c[1].prev, c[0].hash);
        assert_eq!(verify(&c), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn a_record_hashes_the_same_after_a_json_round_trip() {
        for r in chain(3) {
            let back: AuditRecord =
                serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
            assert_eq!(back.compute_hash(), r.hash);
        }
    }

    #[test]
    fn hash_excludes_itself_and_covers_every_other_field() {
        let r = chain(1).remove(0);
        let mut h = r.clone();
        h.hash = "x".into();
        assert_eq!(h.compute_hash(), r.hash);
        type Edit = Box<dyn Fn(&mut AuditRecord)>;
        let edits: Vec<Edit> = vec![
            Box::new(|r: &mut AuditRecord| r.seq += 1),
            Box::new(|r: &mut AuditRecord| r.time += chrono::Duration::nanoseconds(1)),
            Box::new(|r: &mut AuditRecord| r.kind = AuditKind::Guard),
            Box::new(|r: &mut AuditRecord| r.actor.name.push('x')),
            Box::new(|r: &mut AuditRecord| r.actor.source = Some("10.0.0.1:1".into())),
            Box::new(|r: &mut AuditRecord| r.subject = None),
            Box::new(|r: &mut AuditRecord| r.alert_id = Some("other".into())),
            Box::new(|r: &mut AuditRecord| r.action_key = Some("k".into())),
            Box::new(|r: &mut AuditRecord| r.policy_digest = Some("d".into())),
            Box::new(|r: &mut AuditRecord| r.detail["i"] = 2.into()),
            Box::new(|r: &mut AuditRecord| r.prev = "1".repeat(64)),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut e = r.clone();
            edit(&mut e);
            assert_ne!(e.compute_hash(), r.hash, "edit {i} not covered by the hash");
        }
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut c = chain(5);
        c[2].detail["i"] = 99.into();
        let e = verify(&c).unwrap_err();
        assert_eq!(e.seq, 3);
        assert!(matches!(e.tamper, Tamper::Edited { .. }), "{e}");
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].detail["i"] = 99.into();
        c[2].hash = c[2].compute_hash();
        let e = verify(&c).unwrap_err();
        assert_eq!(e.seq, 4);
        assert!(
            matches!(e.tamper, Tamper::BrokenLink { before: 3, .. }),
            "{e}"
        );
    }

    #[test]
    fn a_deleted_record_is_named() {
        let mut c = chain(5);
        c.remove(1);
        let e = verify(&c).unwrap_err();
        assert_eq!(
            e,
            VerifyError {
                seq: 2,
                tamper: Tamper::Missing { found: 3 }
            }
        );
        // Deleting the first record is caught too.
        let mut c = chain(3);
        c.remove(0);
        assert_eq!(verify(&c).unwrap_err().seq, 1);
    }

    #[test]
    fn swapped_records_are_named() {
        let mut c = chain(5);
        c.swap(1, 2);
        let e = verify(&c).unwrap_err();
        assert_eq!(
            e,
            VerifyError {
                seq: 2,
                tamper: Tamper::Missing { found: 3 }
            }
        );
        let mut c = chain(5);
        c[3] = c[1].clone();
        let e = verify(&c).unwrap_err();
        assert_eq!(
            e,
            VerifyError {
                seq: 4,
                tamper: Tamper::OutOfOrder { found: 2 }
            }
        );
    }

    #[test]
    fn renumbered_records_after_a_deletion_fail_on_their_hash() {
        let mut c = chain(4);
        c.remove(1);
        c[1].seq = 2;
        assert_eq!(verify(&c).unwrap_err().seq, 2);
    }

    #[test]
    fn a_cut_off_tail_is_caught_against_the_head() {
        let c = chain(4);
        let head = AuditHead {
            seq: 4,
            hash: c[3].hash.clone(),
        };
        let mut v = Verifier::new();
        for r in &c[..2] {
            v.feed(r).unwrap();
        }
        let e = v.finish(Some(&head)).unwrap_err();
        assert_eq!(
            e,
            VerifyError {
                seq: 3,
                tamper: Tamper::Truncated { last: 2, head: 4 }
            }
        );
        let mut v = Verifier::new();
        for r in &c {
            v.feed(r).unwrap();
        }
        assert_eq!(v.finish(Some(&head)), Ok(4));
    }

    #[test]
    fn verification_can_start_after_an_anchor() {
        let c = chain(6);
        let mut v = Verifier::after(&c[2]);
        for r in &c[3..] {
            v.feed(r).unwrap();
        }
        assert_eq!(v.count(), 3);
        assert_eq!(v.next_seq(), 7);
    }

    #[test]
    fn filter_matches_every_set_field() {
        let r = chain(2).remove(1);
        let mut f = AuditFilter {
            subject: Some("user2@corp.example".into()),
            alert_id: Some("alert-2".into()),
            ..Default::default()
        };
        assert!(f.matches(&r));
        f.since = Some(r.time + chrono::Duration::seconds(1));
        assert!(!f.matches(&r));
        f.since = None;
        f.action_key = Some("k".into());
        assert!(!f.matches(&r));
    }
}
