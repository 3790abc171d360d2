//! [`ActionStore`] for [`RedisStore`].

use super::*;
use crate::ledger::{ActionStore, LaneRequest};

#[async_trait]
impl ActionStore for RedisStore {
    async fn insert_action(
        &self,
        action: &ActionRecord,
        coalesce_window: Duration,
        linked_alert: Option<&str>,
    ) -> Result<Inserted, StoreError> {
        let d = Derived::of(action);
        let json = encode(action)?;
        let window_ms = px_ms(coalesce_window);
        let (absorbing, superseded) = holder_sets(action.state);
        let mut conn = self.conn.clone();
        let reply: Vec<String> = INSERT
            .key(self.key("action", &action.key))
            .key(self.key("coalesce", &d.coalesce))
            .key(self.key("lane", d.connector))
            .arg(&*self.base)
            .arg(&action.key)
            .arg(json)
            .arg(d.created_ms)
            .arg(due_arg(&d))
            .arg(flag(d.pending))
            .arg(flag(d.absorbs))
            .arg(window_ms)
            .arg(opt(linked_alert))
            .arg(Utc::now().timestamp_millis())
            .arg(d.state)
            .arg(d.subject)
            .arg(opt(d.alert_id))
            .arg(absorbing)
            .arg(superseded)
            .arg(lane_arg(&d))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err(&format!("recording action `{}`", action.key), e))?;
        match reply.as_slice() {
            [r] if r == "new" => Ok(Inserted::New),
            [r] if r == "duplicate" => Ok(Inserted::Duplicate),
            [r, holder] if r == "coalesced" => Ok(Inserted::Coalesced(holder.clone())),
            [r, holder] if r == "superseded" => Ok(Inserted::Superseded(holder.clone())),
            other => Err(StoreError::Other(format!(
                "unexpected reply {other:?} from the insert script for `{}`",
                action.key
            ))),
        }
    }

    async fn get_action(&self, key: &str) -> Result<Option<ActionRecord>, StoreError> {
        let mut found = self.fetch(&[key.to_string()]).await?;
        Ok(found.pop().flatten())
    }

    async fn put_action(&self, action: &ActionRecord) -> Result<(), StoreError> {
        self.put_now(self.put_args(action)?).await
    }

    async fn due_actions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        ::redis::cmd("ZRANGEBYSCORE")
            .arg(self.index("due"))
            .arg("-inf")
            .arg(now.timestamp_millis())
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("reading the due index", e))
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut conn = self.conn.clone();
        let first: Vec<(String, f64)> = ::redis::cmd("ZRANGE")
            .arg(self.index("due"))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("reading the due index", e))?;
        match first.first() {
            // Scores are whole milliseconds, exact in an f64 for any real date.
            Some((_, score)) => from_ms(*score as i64).map(Some),
            None => Ok(None),
        }
    }

    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let ttl_ms = px_ms(ttl).max(1);
        let mut conn = self.conn.clone();
        let set: Option<String> = ::redis::cmd("SET")
            .arg(self.key("claim", key))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err(&format!("claiming action `{key}`"), e))?;
        Ok(set.is_some())
    }

    async fn claim_lanes(
        &self,
        lanes: &[LaneRequest<'_>],
        now: DateTime<Utc>,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<LaneDue>, StoreError> {
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = CLAIM_LANES.prepare_invoke();
        for l in lanes {
            call.key(self.key("lane", l.connector));
        }
        call.arg(&*self.base)
            .arg(owner)
            .arg(px_ms(ttl).max(1))
            .arg(i64::from(Urgency::LEVELS));
        for b in rank_bounds(now.timestamp_millis()) {
            call.arg(b);
        }
        for l in lanes {
            call.arg(l.limit);
        }
        let mut conn = self.conn.clone();
        type Reply = (
            Vec<String>,
            i64,
            i64,
            i64,
            Vec<Option<Vec<u8>>>,
            Vec<Vec<String>>,
        );
        let reply: Vec<Reply> = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("claiming due actions", e))?;
        let time = |ms: i64| (ms >= 0).then(|| from_ms(ms)).transpose();
        reply
            .into_iter()
            .map(|(claimed, waiting, oldest, next, raw, linked)| {
                let records = claimed
                    .iter()
                    .zip(raw)
                    .zip(linked)
                    .map(|((k, raw), linked)| {
                        raw.map(|raw| decode(k, &raw).map(|a| with_linked(a, linked)))
                            .transpose()
                    })
                    .collect::<Result<_, StoreError>>()?;
                Ok(LaneDue {
                    claimed,
                    records,
                    waiting: u64::try_from(waiting).unwrap_or(0),
                    oldest_due: time(oldest)?,
                    next_due: time(next)?,
                })
            })
            .collect()
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = RELEASE
            .key(self.key("claim", key))
            .arg(owner)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err(&format!("releasing the claim on `{key}`"), e))?;
        Ok(())
    }

    async fn record_transition(
        &self,
        action: &ActionRecord,
        audit: Vec<AuditDraft>,
        release_for: Option<&str>,
    ) -> Result<(), StoreError> {
        let put = self.put_args(action)?;
        let release = release_for.map(|owner| (action.key.clone(), owner.to_string()));
        self.group_commit(audit, Some(put), release).await?;
        Ok(())
    }

    async fn list_actions(&self, filter: &ActionFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let limit = effective_limit(filter.limit);
        // Walk the narrowest index the filter allows, newest (or oldest) first, re-checking the whole filter on
        // each record (an index entry may be stale, and only one filter field picks the index).
        let index = if let Some(alert) = filter.alert_id.as_deref() {
            self.key("alert", alert)
        } else if let Some(subject) = filter.subject.as_deref() {
            self.key("subject", subject)
        } else if let Some(state) = filter.state {
            self.key("state", state.as_str())
        } else {
            self.index("created")
        };
        let page = limit.clamp(32, 512);
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut offset = 0usize;
        while out.len() < limit {
            let mut conn = self.conn.clone();
            let walk = if filter.oldest_first {
                "ZRANGE"
            } else {
                "ZREVRANGE"
            };
            let keys: Vec<String> = ::redis::cmd(walk)
                .arg(&index)
                .arg(offset)
                .arg(offset + page - 1)
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_err("listing actions", e))?;
            let got = keys.len();
            // Entries inserted meanwhile shift the pages; never list a key twice.
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|k| seen.insert(k.clone()))
                .collect();
            for a in self.fetch(&keys).await?.into_iter().flatten() {
                if out.len() < limit && matches(filter, &a) {
                    out.push(a);
                }
            }
            if got < page {
                break;
            }
            offset += page;
        }
        Ok(out)
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("SCARD")
            .arg(self.index("pending"))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("counting pending actions", e))
    }
}
