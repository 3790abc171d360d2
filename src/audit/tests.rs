//! The chain: sealing, verification, and what each kind of tampering looks like.

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
        let back: AuditRecord = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
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

/// Record-sealed records (as written before batch sealing), then two batch-sealed batches.
fn mixed_chain() -> Vec<AuditRecord> {
    let mut c = chain(3);
    let head = AuditHead {
        seq: 3,
        hash: c[2].hash.clone(),
    };
    let one = seal_batch((4..=6).map(draft).collect(), Some(&head));
    let two = seal_batch((7..=8).map(draft).collect(), one.head.as_ref());
    c.extend(one.records);
    c.extend(two.records);
    c
}

#[test]
fn batches_chain_onto_record_sealed_records_and_verify() {
    let c = mixed_chain();
    assert_eq!(
        c[3].prev, c[2].hash,
        "the first batch follows the old chain"
    );
    assert!(c[3].hash.is_empty() && c[5].seals());
    assert_eq!(c[6].prev, c[5].hash);
    assert_eq!(verify(&c), Ok(8));
    // Read back from JSON (as a store serves them), the seals still hold.
    let back: Vec<AuditRecord> = c
        .iter()
        .map(|r| serde_json::from_slice(&serde_json::to_vec(r).unwrap()).unwrap())
        .collect();
    assert_eq!(verify(&back), Ok(8));
}

#[test]
fn an_edit_inside_a_batch_names_the_batch() {
    let mut c = mixed_chain();
    c[4].detail["i"] = 99.into();
    let e = verify(&c).unwrap_err();
    assert_eq!(e.seq, 4);
    assert!(
        matches!(e.tamper, Tamper::BatchEdited { last: 6, .. }),
        "{e}"
    );
    // Dropping the format mark makes it a record-sealed record whose hash is wrong.
    let mut c = mixed_chain();
    c[3].v = 1;
    assert!(matches!(
        verify(&c).unwrap_err().tamper,
        Tamper::Edited { .. }
    ));
    // A forged seal mid-batch does not match either.
    let mut c = mixed_chain();
    c[3].hash = c[5].hash.clone();
    assert_eq!(verify(&c).unwrap_err().seq, 4);
}

#[test]
fn a_missing_seal_is_caught() {
    // The last batch's seal cut off: its records are unsealed.
    let mut c = mixed_chain();
    c.pop();
    let e = verify(&c).unwrap_err();
    assert_eq!((e.seq, e.tamper), (7, Tamper::Unsealed { last: 7 }));
    // A middle batch's seal deleted: the seq run breaks.
    let mut c = mixed_chain();
    c.remove(5);
    let e = verify(&c).unwrap_err();
    assert_eq!((e.seq, e.tamper), (6, Tamper::Missing { found: 7 }));
}

#[test]
fn verification_can_start_after_a_batch_seal() {
    let c = mixed_chain();
    let mut v = Verifier::after(&c[5]);
    for r in &c[6..] {
        v.feed(r).unwrap();
    }
    let head = AuditHead {
        seq: 8,
        hash: c[7].hash.clone(),
    };
    assert_eq!(v.finish(Some(&head)), Ok(2));
}
