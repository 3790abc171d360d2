//! [`AuditStore`] for [`EmbeddedStore`].

use super::*;
use crate::ledger::AuditStore;

#[async_trait]
impl AuditStore for EmbeddedStore {
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<Vec<AuditRecord>, StoreError> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        self.run(move |db| {
            let tx = db.begin_write().map_err(db_err)?;
            let sealed = {
                let mut meta = tx.open_table(AUDIT_META).map_err(db_err)?;
                let head = match meta.get("head").map_err(db_err)? {
                    Some(g) => parse_head(g.value())?,
                    None => None,
                };
                // One append, one batch, one seal.
                let batch = seal_batch(drafts, head.as_ref());
                let mut records = tx.open_table(AUDIT).map_err(db_err)?;
                for (r, json) in batch.records.iter().zip(&batch.encoded) {
                    records.insert(r.seq, json.as_slice()).map_err(db_err)?;
                }
                let new_head = head_string(batch.head.as_ref());
                meta.insert("head", new_head.as_str()).map_err(db_err)?;
                batch.records
            };
            tx.commit().map_err(db_err)?;
            Ok(sealed)
        })
        .await
    }

    async fn audit_range(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = effective_limit(limit);
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let records = tx.open_table(AUDIT).map_err(db_err)?;
            let mut out = Vec::new();
            // Stored order is by seq; a deleted record leaves a gap that `verify` reports.
            for entry in records
                .range(from_seq.max(1)..)
                .map_err(db_err)?
                .take(limit)
            {
                let (k, v) = entry.map_err(db_err)?;
                let r = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    key: format!("audit record at position {}", k.value()),
                    reason: format!("not a valid audit record: {e}"),
                })?;
                out.push(r);
            }
            Ok(out)
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        self.run(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            let meta = tx.open_table(AUDIT_META).map_err(db_err)?;
            match meta.get("head").map_err(db_err)? {
                Some(g) => parse_head(g.value()),
                None => Ok(None),
            }
        })
        .await
    }
}
