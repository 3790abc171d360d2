//! Batch sealing (record format 2): one SHA-256 per appended batch, one serialization per record.
//!
//! A batch `r1 … rn` after a chain whose last seal (or record-sealed hash) is `P`:
//!
//! - every `ri` has `v = 2`, `prev = P` and consecutive `seq`s;
//! - `rn.hash` = hex SHA-256 of `bytes(r1) ‖ "\n" ‖ … ‖ bytes(rn) ‖ "\n"`, where `bytes` is
//!   `serde_json` of [`Canonical::batch_sealed`] (every field but `hash`, in the stored order); the other
//!   records have no `hash`.
//!
//! The stored JSON of `ri` is exactly `bytes(ri)`, with `,"hash":"…"` spliced before the closing
//! brace of `rn`: sealing serializes each record once, and the store writes those bytes as they are.

use sha2::{Digest, Sha256};

use super::*;

/// Feed one record's canonical bytes into a batch's running seal.
pub(super) fn absorb(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update(bytes);
    hasher.update(b"\n");
}

/// A sealed batch, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SealedBatch {
    /// The records, in order; the last carries the seal.
    pub records: Vec<AuditRecord>,
    /// Each record's stored JSON (its canonical bytes; the seal's with `hash`).
    pub encoded: Vec<Vec<u8>>,
    /// The chain's head after this batch (the one given, when the batch is empty).
    pub head: Option<AuditHead>,
}

impl SealedBatch {
    /// The drafts back, for resealing after another appender moved the head.
    pub(crate) fn into_drafts(self) -> Vec<AuditDraft> {
        self.records
            .into_iter()
            .map(AuditRecord::into_draft)
            .collect()
    }
}

impl AuditRecord {
    /// The draft this record was sealed from (its place in the chain dropped).
    pub fn into_draft(self) -> AuditDraft {
        AuditDraft {
            time: self.time,
            kind: self.kind,
            actor: self.actor,
            subject: self.subject,
            alert_id: self.alert_id,
            action_key: self.action_key,
            policy_digest: self.policy_digest,
            detail: self.detail,
        }
    }
}

/// Seal `drafts` as one batch after `head` (`None`: the chain is empty).
pub(crate) fn seal_batch(drafts: Vec<AuditDraft>, head: Option<&AuditHead>) -> SealedBatch {
    let (mut seq, prev) = match head {
        Some(h) => (h.seq, h.hash.as_str()),
        None => (0, GENESIS),
    };
    let mut hasher = Sha256::new();
    let mut records = Vec::with_capacity(drafts.len());
    let mut encoded = Vec::with_capacity(drafts.len());
    for d in drafts {
        seq += 1;
        let r = AuditRecord {
            seq,
            time: d.time,
            kind: d.kind,
            actor: d.actor,
            subject: d.subject,
            alert_id: d.alert_id,
            action_key: d.action_key,
            policy_digest: d.policy_digest,
            detail: d.detail,
            prev: prev.to_string(),
            v: 2,
            hash: String::new(),
        };
        let bytes = Canonical::batch_sealed(&r).to_bytes();
        absorb(&mut hasher, &bytes);
        records.push(r);
        encoded.push(bytes);
    }
    let (Some(last), Some(bytes)) = (records.last_mut(), encoded.last_mut()) else {
        return SealedBatch {
            records,
            encoded,
            head: head.cloned(),
        };
    };
    last.hash = hex::encode(hasher.finalize());
    // `{…}` → `{…,"hash":"<seal>"}`: the field serde would write last.
    bytes.pop();
    bytes.extend_from_slice(b",\"hash\":\"");
    bytes.extend_from_slice(last.hash.as_bytes());
    bytes.extend_from_slice(b"\"}");
    let head = Some(AuditHead {
        seq: last.seq,
        hash: last.hash.clone(),
    });
    SealedBatch {
        records,
        encoded,
        head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drafts(n: u32) -> Vec<AuditDraft> {
        (0..n)
            .map(|i| {
                let mut d = AuditDraft::new(
                    AuditKind::ActionState,
                    Actor::system("test"),
                    serde_json::json!({"i": i, "z": [1.5, {"b": 1, "a": "ü\"\n"}]}),
                );
                d.action_key = Some(format!("k{i}"));
                d
            })
            .collect()
    }

    #[test]
    fn stored_bytes_are_the_records_as_serde_writes_them() {
        let b = seal_batch(drafts(3), None);
        for (r, bytes) in b.records.iter().zip(&b.encoded) {
            assert_eq!(bytes, &serde_json::to_vec(r).unwrap());
            let back: AuditRecord = serde_json::from_slice(bytes).unwrap();
            assert_eq!(&back, r);
        }
        assert!(b.records[..2].iter().all(|r| r.hash.is_empty()));
        assert_eq!(b.head.unwrap().hash, b.records[2].hash);
    }

    #[test]
    fn every_record_of_a_batch_follows_the_seal_before_it() {
        let one = seal_batch(drafts(2), None);
        assert!(one.records.iter().all(|r| r.prev == GENESIS && r.v == 2));
        let two = seal_batch(drafts(3), one.head.as_ref());
        assert_eq!(two.records[0].seq, 3);
        assert!(two.records.iter().all(|r| r.prev == one.records[1].hash));
        let all: Vec<AuditRecord> = one.records.into_iter().chain(two.records).collect();
        assert_eq!(verify(&all), Ok(5));
    }

    #[test]
    fn an_empty_batch_keeps_the_head() {
        let head = AuditHead {
            seq: 7,
            hash: "ab".repeat(32),
        };
        let b = seal_batch(Vec::new(), Some(&head));
        assert!(b.records.is_empty() && b.encoded.is_empty());
        assert_eq!(b.head, Some(head));
    }

    #[test]
    fn drafts_come_back_unchanged_for_a_reseal() {
        let d = drafts(3);
        let again = seal_batch(d.clone(), None).into_drafts();
        assert_eq!(again, d);
    }
}
