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
