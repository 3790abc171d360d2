//! [`ActionStore`] for [`EmbeddedStore`].

use super::*;
use crate::ledger::{ActionStore, LaneRequest};

#[async_trait]
impl ActionStore for EmbeddedStore {
    async fn insert_action(
        &self,
        action: &ActionRecord,
        coalesce_window: Duration,
        linked_alert: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let action = action.clone();
        let linked = linked_alert.map(str::to_string);
        let window_ms = duration_ms(coalesce_window);
        self.run(move |db| insert_tx(db, &action, window_ms, linked.as_deref()))
            .await
    }

    async fn get_action(&self, key: &str) -> Result<Option<ActionRecord>, StoreError> {
        let key = key.to_string();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let records = tx.open_table(RECORDS).map_err(db_err)?;
            let found = records.get(key.as_str()).map_err(db_err)?;
            found.map(|g| decode(&key, g.value())).transpose()
        })
        .await
    }

    async fn put_action(&self, action: &ActionRecord) -> Result<(), StoreError> {
        let action = action.clone();
        self.run(move |db| put_tx(db, action)).await
    }

    async fn due_actions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let now = now.timestamp_millis();
        self.run(move |db| {
            let tx = db.begin_read().map_err(db_err)?;
            let due = tx.open_table(DUE).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in due
                .range((i64::MIN, "")..(now.saturating_add(1), ""))
                .map_err(db_err)?
                .take(limit)
            {
                let (k, _) = entry.map_err(db_err)?;
                out.push(k.value().1.to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.run(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            let due = tx.open_table(DUE).map_err(db_err)?;
            match due.first().map_err(db_err)? {
                Some((k, _)) => from_ms(k.value().0).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = key.to_string();
        let owner = owner.to_string();
        let ttl_ms = duration_ms(ttl).max(1);
        self.write_if(move |tx| {
            let now = now_ms();
            let mut claims = tx.open_table(CLAIMS).map_err(db_err)?;
            let held = claims
                .get(key.as_str())
                .map_err(db_err)?
                .is_some_and(|g| g.value().1 > now);
            if !held {
                claims
                    .insert(key.as_str(), (owner.as_str(), now.saturating_add(ttl_ms)))
                    .map_err(db_err)?;
            }
            Ok(!held)
        })
        .await
    }

    async fn claim_lanes(
        &self,
        lanes: &[LaneRequest<'_>],
        now: DateTime<Utc>,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<LaneDue>, StoreError> {
        let lanes: Vec<(String, usize)> = lanes
            .iter()
            .map(|l| (l.connector.to_string(), l.limit))
            .collect();
        let owner = owner.to_string();
        let (now, ttl_ms) = (now.timestamp_millis(), duration_ms(ttl).max(1));
        self.run(move |db| claim_lanes_tx(db, &lanes, now, &owner, ttl_ms))
            .await
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        let owner = owner.to_string();
        self.write_if(move |tx| {
            let mut claims = tx.open_table(CLAIMS).map_err(db_err)?;
            let ours = claims
                .get(key.as_str())
                .map_err(db_err)?
                .is_some_and(|g| g.value().0 == owner);
            if ours {
                claims.remove(key.as_str()).map_err(db_err)?;
            }
            Ok(ours)
        })
        .await
        .map(drop)
    }

    async fn record_transition(
        &self,
        action: &ActionRecord,
        audit: Vec<AuditDraft>,
        release_for: Option<&str>,
    ) -> Result<(), StoreError> {
        // One process owns this store: the steps in turn keep its guarantees (the ledger first).
        self.put_action(action).await?;
        crate::ledger::AuditStore::append_audit(self, audit).await?;
        if let Some(owner) = release_for {
            self.release(&action.key, owner).await?;
        }
        Ok(())
    }

    async fn list_actions(&self, filter: &ActionFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let filter = filter.clone();
        self.run(move |db| list_tx(db, &filter)).await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.run(|db| {
            let tx = db.begin_read().map_err(db_err)?;
            tx.open_table(PENDING)
                .map_err(db_err)?
                .len()
                .map_err(db_err)
        })
        .await
    }
}
