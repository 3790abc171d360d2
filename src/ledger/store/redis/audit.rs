//! [`AuditStore`] for [`RedisStore`].

use super::*;
use crate::ledger::AuditStore;

#[async_trait]
impl AuditStore for RedisStore {
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<Vec<AuditRecord>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        // Group commit (see `commit`): concurrent alerts and actions share round trips.
        self.group_commit(drafts, None, None).await
    }

    async fn audit_range(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let start = i64::try_from(from_seq.max(1) - 1).unwrap_or(i64::MAX);
        let stop = if limit == 0 {
            -1
        } else {
            start.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX) - 1)
        };
        let mut conn = self.conn.clone();
        let raw: Vec<Vec<u8>> = ::redis::cmd("LRANGE")
            .arg(self.index("audit"))
            .arg(start)
            .arg(stop)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("reading the audit trail", e))?;
        raw.iter()
            .enumerate()
            .map(|(i, bytes)| {
                serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
                    key: format!("audit record at position {}", start + i as i64 + 1),
                    reason: format!("not a valid audit record: {e}"),
                })
            })
            .collect()
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = ::redis::cmd("GET")
            .arg(self.key("audit", "head"))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("reading the audit head", e))?;
        parse_head(raw.as_deref().unwrap_or(""))
    }
}
