//! [`DocStore`] for [`RedisStore`].

use super::*;
use crate::ledger::DocStore;

#[async_trait]
impl DocStore for RedisStore {
    async fn put_json(
        &self,
        ns: &str,
        key: &str,
        doc: &serde_json::Value,
        only_if_absent: bool,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let bytes = encode_doc(ns, key, doc)?;
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key("doc", &format!("{ns}:{key}"))).arg(bytes);
        if only_if_absent {
            cmd.arg("NX");
        }
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(px_ms(ttl).max(1));
        }
        let mut conn = self.conn.clone();
        let set: Option<String> = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err(&format!("writing document `{ns}/{key}`"), e))?;
        Ok(set.is_some())
    }

    async fn get_json(&self, ns: &str, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(self.key("doc", &format!("{ns}:{key}")))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err(&format!("reading document `{ns}/{key}`"), e))?;
        raw.map(|b| decode_doc(ns, key, &b)).transpose()
    }
}
