//! [`BreakerStore`] for [`EmbeddedStore`].

use super::*;
use crate::ledger::BreakerStore;

#[async_trait]
impl BreakerStore for EmbeddedStore {
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
