//! [`AlertStore`] for [`RedisStore`]: one sorted set, `{ledger}:alerts`, every member scored 0 and
//! spelled `<received ms, 13 digits>:<alert id>\n<JSON>`, so lexicographic order is time order and
//! `ZRANGEBYLEX` pages and `ZREMRANGEBYLEX` prunes without a second key to keep in step. JSON never
//! holds the byte 0xFF, so `<ms>:<id>\n\xFF` sorts after every member of that alert: the page cursor.

use super::*;
use crate::ledger::{AlertCursor, AlertStore, RetainedAlert};

/// Received time as a fixed-width decimal: sorts as text the way it sorts as a number (until 2286).
fn stamp(ms: i64) -> String {
    format!("{:013}", ms.max(0))
}

#[async_trait]
impl AlertStore for RedisStore {
    async fn retain_alerts(&self, alerts: &[RetainedAlert]) -> Result<(), StoreError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut cmd = ::redis::cmd("ZADD");
        cmd.arg(self.index("alerts"));
        for a in alerts {
            let json = serde_json::to_vec(a).map_err(|e| {
                StoreError::Other(format!("cannot encode alert `{}`: {e}", a.alert.id))
            })?;
            let mut member = format!(
                "{}:{}\n",
                stamp(a.received_at.timestamp_millis()),
                a.alert.id
            )
            .into_bytes();
            member.extend_from_slice(&json);
            cmd.arg(0).arg(member);
        }
        let mut conn = self.conn.clone();
        let _: i64 = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("retaining alerts", e))?;
        Ok(())
    }

    async fn retained_alerts(
        &self,
        since: DateTime<Utc>,
        after: Option<&AlertCursor>,
        limit: usize,
    ) -> Result<Vec<RetainedAlert>, StoreError> {
        let mut min = format!("[{}", stamp(since.timestamp_millis())).into_bytes();
        if let Some(c) = after {
            let mut bound = format!("({}:{}\n", stamp(c.received_ms), c.id).into_bytes();
            bound.push(0xFF);
            if bound[1..] > min[1..] {
                min = bound;
            }
        }
        let mut conn = self.conn.clone();
        let members: Vec<Vec<u8>> = ::redis::cmd("ZRANGEBYLEX")
            .arg(self.index("alerts"))
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.max(1))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("reading retained alerts", e))?;
        members
            .iter()
            .map(|m| {
                let json = m
                    .iter()
                    .position(|b| *b == b'\n')
                    .map(|i| &m[i + 1..])
                    .unwrap_or_default();
                serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
                    key: self.index("alerts"),
                    reason: format!("retained alert is not JSON: {e}"),
                })
            })
            .collect()
    }

    async fn prune_alerts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("ZREMRANGEBYLEX")
            .arg(self.index("alerts"))
            .arg("-")
            .arg(format!("({}", stamp(before.timestamp_millis())))
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("pruning retained alerts", e))
    }
}
