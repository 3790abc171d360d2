//! [`AuditStore`] for [`RedisStore`].

use super::*;
use crate::ledger::AuditStore;

#[async_trait]
impl AuditStore for RedisStore {
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<Vec<AuditRecord>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        // Group commit: queue the batch; whoever holds the append lock next writes every queued batch
        // in one script call (in queue order, each batch kept contiguous) and answers each caller, so
        // concurrent alerts share round trips instead of waiting for one each.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.audit_queue
            .lock()
            .expect("not poisoned")
            .push((drafts, tx));
        {
            let _leader = self.audit_append.lock().await;
            let queued = std::mem::take(&mut *self.audit_queue.lock().expect("not poisoned"));
            if !queued.is_empty() {
                let sizes: Vec<usize> = queued.iter().map(|(d, _)| d.len()).collect();
                let (all, waiters): (Vec<Vec<AuditDraft>>, Vec<_>) = queued.into_iter().unzip();
                match self
                    .append_audit_now(all.into_iter().flatten().collect())
                    .await
                {
                    Ok(sealed) => {
                        let mut sealed = sealed.into_iter();
                        for (n, w) in sizes.into_iter().zip(waiters) {
                            let _ = w.send(Ok(sealed.by_ref().take(n).collect()));
                        }
                    }
                    Err(e) => {
                        let retryable = e.is_retryable();
                        let msg = e.to_string();
                        for w in waiters {
                            let _ = w.send(Err(if retryable {
                                StoreError::Unavailable(msg.clone())
                            } else {
                                StoreError::Other(msg.clone())
                            }));
                        }
                    }
                }
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Other("audit append abandoned".into())))
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
