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
        let bytes = encode_doc(ns, key, doc)?;
        let (ns, key) = (ns.to_string(), key.to_string());
        self.write_if(move |tx| {
            let now = now_ms();
            let expires = ttl.map_or(0, |t| now.saturating_add(duration_ms(t).max(1)));
            let mut docs = tx.open_table(DOCS).map_err(db_err)?;
            let live = docs
                .get((ns.as_str(), key.as_str()))
                .map_err(db_err)?
                .is_some_and(|g| {
                    let (exp, _) = g.value();
                    exp == 0 || exp > now
                });
            if only_if_absent && live {
                return Ok(false);
            }
            docs.insert((ns.as_str(), key.as_str()), (expires, bytes.as_slice()))
                .map_err(db_err)?;
            Ok(true)
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
            decode_doc(&ns, &key, bytes).map(Some)
        })
        .await
    }
}
