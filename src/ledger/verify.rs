//! Verifying the audit trail as stored: the walk `deprovd audit verify` and `GET /v1/audit/verify`
//! share.

/// Records read per page by [`audit_check`].
const VERIFY_PAGE: usize = 1000;

/// Walk the audit trail in `store` from record `from` (default 1) to its end and check every link and
/// the store's head. `Ok(Ok(n))`: `n` records verified; `Ok(Err(e))`: tampering, naming the first bad
/// record; `Err`: the store could not be read. Reads page by page, so memory stays flat however long
/// the trail.
///
/// With `from > 1`, record `from - 1` is the trusted anchor (its own hash is still checked), or — when
/// it lies inside a batch-sealed batch — the seal before that batch (the batch's records before
/// `from` are then checked too, but not counted). Pages
/// continue at the next expected seq, which is the stored position in an untampered prefix; start
/// from 1 for the authoritative answer on a trail already known to be tampered with.
pub async fn audit_check(
    store: &dyn crate::ledger::AuditStore,
    from: Option<u64>,
) -> Result<Result<u64, crate::audit::VerifyError>, crate::ledger::StoreError> {
    use crate::audit::{Tamper, Verifier, VerifyError};
    use crate::ledger::StoreError;
    let head = store.audit_head().await?;
    let from = from.unwrap_or(1).max(1);
    // The anchor must seal what precedes it: inside a batch, step back to the seal before the
    // batch (its records from there to `from - 1` are verified too, but not counted).
    let mut anchor = None;
    let mut at = from - 1;
    while at > 0 {
        let Some(r) = store.audit_range(at, 1).await?.pop() else {
            return Ok(Err(VerifyError {
                seq: at,
                tamper: Tamper::Truncated {
                    last: 0,
                    head: head.map_or(0, |h| h.seq),
                },
            }));
        };
        if r.seals() {
            anchor = Some(r);
            break;
        }
        at -= 1;
    }
    let mut v = if let Some(anchor) = anchor {
        // A record-sealed anchor's own hash is still checked (a batch's seal needs its batch).
        let computed = anchor.compute_hash();
        if anchor.v == 1 && computed != anchor.hash {
            return Ok(Err(VerifyError {
                seq: anchor.seq,
                tamper: Tamper::Edited {
                    stored: anchor.hash,
                    computed,
                },
            }));
        }
        Verifier::after(&anchor)
    } else {
        Verifier::new()
    };
    let context = from - 1 - at;
    loop {
        let pos = v.next_seq();
        let page = match store.audit_range(pos, VERIFY_PAGE).await {
            Ok(p) => p,
            Err(StoreError::Corrupt { .. }) => {
                // Find the unreadable record: read the page one record at a time.
                let mut at = pos;
                loop {
                    match store.audit_range(at, 1).await {
                        Ok(one) if one.is_empty() => {
                            return Err(StoreError::Other(format!(
                                "audit records from {pos} were unreadable, then readable on retry"
                            )));
                        }
                        Ok(one) => {
                            for r in &one {
                                if let Err(e) = v.feed(r) {
                                    return Ok(Err(e));
                                }
                            }
                            at += 1;
                        }
                        Err(StoreError::Corrupt { reason, .. }) => {
                            return Ok(Err(VerifyError {
                                seq: at,
                                tamper: Tamper::Unreadable(reason),
                            }));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        };
        if page.is_empty() {
            break;
        }
        for r in &page {
            if let Err(e) = v.feed(r) {
                return Ok(Err(e));
            }
        }
        if page.len() < VERIFY_PAGE {
            break;
        }
    }
    Ok(v.finish(head.as_ref()).map(|n| n.saturating_sub(context)))
}
