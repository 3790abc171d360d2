//! [`AlertStore`] for [`EmbeddedStore`]: table `alerts`, (received ms, alert id) → JSON.

use super::*;
use crate::ledger::{AlertCursor, AlertStore, RetainedAlert};

#[async_trait]
impl AlertStore for EmbeddedStore {
    async fn retain_alerts(&self, alerts: &[RetainedAlert]) -> Result<(), StoreError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let rows = alerts
            .iter()
            .map(|a| {
                serde_json::to_vec(a)
                    .map(|json| (a.received_at.timestamp_millis(), a.alert.id.clone(), json))
                    .map_err(|e| {
                        StoreError::Other(format!("cannot encode alert `{}`: {e}", a.alert.id))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.run(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            {
                let mut t = tx.open_table(ALERTS).map_err(db_err)?;
                for (ms, id, json) in &rows {
                    t.insert((*ms, id.as_str()), json.as_slice())
                        .map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn retained_alerts(
        &self,
        since: DateTime<Utc>,
        after: Option<&AlertCursor>,
        limit: usize,
    ) -> Result<Vec<RetainedAlert>, StoreError> {
        let since = since.timestamp_millis();
        let after = after.cloned();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let t = tx.open_table(ALERTS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in t.range((since, "")..).map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let (ms, id) = k.value();
                if after
                    .as_ref()
                    .is_some_and(|c| (ms, id) <= (c.received_ms, c.id.as_str()))
                {
                    continue;
                }
                let a: RetainedAlert =
                    serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                        key: format!("alerts/{ms}/{id}"),
                        reason: format!("retained alert is not JSON: {e}"),
                    })?;
                out.push(a);
                if out.len() >= limit.max(1) {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn prune_alerts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = before.timestamp_millis();
        self.run(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            let removed = {
                let mut t = tx.open_table(ALERTS).map_err(db_err)?;
                let old = t
                    .extract_from_if((i64::MIN, "")..(before, ""), |_, _| true)
                    .map_err(db_err)?;
                let mut n = 0u64;
                for row in old {
                    row.map_err(db_err)?;
                    n += 1;
                }
                n
            };
            tx.commit().map_err(db_err)?;
            Ok(removed)
        })
        .await
    }
}
