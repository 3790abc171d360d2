//! [`DocStore`] for [`EmbeddedStore`].

use super::*;
use crate::ledger::DocStore;

#[async_trait]
impl DocStore for EmbeddedStore {
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
}
