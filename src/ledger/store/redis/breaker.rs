//! [`BreakerStore`] for [`RedisStore`].

use super::*;
use crate::ledger::BreakerStore;

#[async_trait]
impl BreakerStore for RedisStore {
    async fn breaker_admit(
        &self,
        scopes: &[BreakerScope],
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<BreakerAdmission>, StoreError> {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = now.timestamp_millis();
        // The script names its keys from ARGV[1]; KEYS[1] (unused by it) routes the call to the
        // `{ledger}` slot's node on a Cluster, where a call without keys would go to any node.
        let mut call = BREAKER_ADMIT.key(self.index("breaker"));
        call.arg(&*self.base);
        call.arg(subject).arg(now_ms);
        for s in scopes {
            let window = px_ms(s.window).max(1);
            call.arg(&s.name)
                .arg(s.threshold)
                .arg(now_ms.saturating_sub(window as i64))
                .arg(window);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<u64> = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err("admitting a subject into the breaker window", e))?;
        if reply.len() != scopes.len() * 3 {
            return Err(StoreError::Other(format!(
                "breaker script answered {} values for {} scopes",
                reply.len(),
                scopes.len()
            )));
        }
        Ok(scopes
            .iter()
            .zip(reply.chunks(3))
            .map(|(s, r)| BreakerAdmission {
                scope: s.name.clone(),
                subjects: r[0],
                open: r[1] == 1,
                tripped: r[2] == 1,
            })
            .collect())
    }

    async fn breaker_reset(&self, scopes: &[String]) -> Result<Vec<String>, StoreError> {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for s in scopes {
            pipe.cmd("DEL")
                .arg(self.key("breaker", &format!("open:{s}")));
            pipe.cmd("DEL")
                .arg(self.key("breaker", &format!("subjects:{s}")))
                .ignore();
        }
        let mut conn = self.conn.clone();
        let deleted: Vec<u64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("resetting the breaker", e))?;
        Ok(scopes
            .iter()
            .zip(deleted)
            .filter(|(_, n)| *n > 0)
            .map(|(s, _)| s.clone())
            .collect())
    }

    async fn breaker_status(
        &self,
        scopes: &[BreakerScope],
        now: DateTime<Utc>,
    ) -> Result<Vec<BreakerState>, StoreError> {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = now.timestamp_millis();
        let mut pipe = ::redis::pipe();
        for s in scopes {
            let cutoff = now_ms.saturating_sub(px_ms(s.window).max(1) as i64);
            pipe.cmd("GET")
                .arg(self.key("breaker", &format!("open:{}", s.name)));
            pipe.cmd("ZCOUNT")
                .arg(self.key("breaker", &format!("subjects:{}", s.name)))
                .arg(format!("({cutoff}"))
                .arg("+inf");
        }
        let mut conn = self.conn.clone();
        let values: Vec<Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("reading the breaker", e))?;
        let mut out = Vec::with_capacity(scopes.len());
        let mut values = values.into_iter();
        for s in scopes {
            let (Some(flag), Some(count)) = (values.next(), values.next()) else {
                return Err(StoreError::Other("short reply reading the breaker".into()));
            };
            let corrupt = |e: ::redis::ParsingError| StoreError::Corrupt {
                key: format!("breaker:{}", s.name),
                reason: e.to_string(),
            };
            let flag: Option<i64> = ::redis::from_redis_value(flag).map_err(corrupt)?;
            let subjects: u64 = ::redis::from_redis_value(count).map_err(corrupt)?;
            out.push(BreakerState {
                scope: s.name.clone(),
                open: flag.is_some(),
                opened_at: flag.map(from_ms).transpose()?,
                subjects,
                threshold: s.threshold,
                window: s.window,
            });
        }
        Ok(out)
    }
}
