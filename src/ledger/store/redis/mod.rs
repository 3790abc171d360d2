//! [`RedisStore`]: the ledger in Redis, shared by every replica.
//!
//! Every multi-step change is one Lua script, which Redis runs atomically: `insert_action` (duplicate
//! check, coalesce slot, record and indexes) and `put_action` (record and indexes) can never be seen
//! half done, and two replicas racing on the same alert produce one action. Each call is one round
//! trip (`EVALSHA`; the script is loaded on the first `NOSCRIPT`).
//!
//! # Keys
//!
//! Every key is `<prefix>{ledger}:<name>`. The `{ledger}` hash tag puts all of them in one Redis Cluster
//! slot, which multi-key scripts require (the insert script reaches keys it only learns while running,
//! such as the coalesce slot holder's record). See the [module docs](super) for why each index exists.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `action:<key>` | string | the record, as JSON |
//! | `linked:<key>` | sorted set | alerts coalesced into the action (score: first linked, ms) |
//! | `due` | sorted set | planned actions with a next attempt (score: `next_attempt_at` ms) |
//! | `lane:<connector>` | sorted set | the same entries per connector (score: [`lane_score`] of urgency rank and `next_attempt_at` ms) |
//! | `pending` | set | keys of pending actions |
//! | `coalesce:<coalesce key>` | string with `PX` = window | key of the action holding the slot |
//! | `claim:<key>` | string with `PX` = ttl | the claim's owner |
//! | `created` | sorted set | every key (score: `created_at` ms) |
//! | `subject:<s>` / `alert:<id>` / `state:<s>` | sorted sets | keys by subject / alert (caused or linked) / state, scored by `created_at` |
//! | `doc:<ns>:<key>` | string, optional `PX` | a small JSON document (lockout, idempotency claim) |
//! | `audit` | list | audit records as JSON, record `n` at index `n - 1` |
//! | `audit:head` | string | `<seq>:<hash>` of the last audit record |
//! | `breaker:subjects:<scope>` | sorted set, `PX` = window | subjects admitted (score: last admitted, ms) |
//! | `breaker:open:<scope>` | string | set while the scope's breaker is open: when it tripped (ms) |
//!
//! Audit appends and the executor's state changes share one group commit ([`commit`]): whoever
//! writes next takes everything queued and writes it in one [`COMMIT`] script run — action records
//! with their indexes, the claims they release, and the audit records sealed as one batch. The
//! append is optimistic: the client seals the batch after the head it last saw and the script
//! writes only if the head is still that one (else it writes nothing and answers the current head,
//! and the client reseals and retries). Redis has no SHA-256 in Lua, so hashing must happen in the
//! client; the check-and-write keeps the chain single even with many replicas appending, and a
//! replica that appends alone pays one round trip.
//!
//! Linked alerts live in their own sorted set instead of inside the JSON so that the insert script never
//! decodes and re-encodes a record (Lua's cjson turns `[]` into `{}` and rounds floats); `get_action`
//! merges them back into `linked_alerts`.

mod actions;
mod alerts;
mod audit;
mod breaker;
mod commit;
mod config;
mod conn;
mod docs;
mod durability;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, ServerErrorKind, Value};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use config::{Durability, RedisConfig};
pub(crate) use config::{SentinelConfig, Topology};
use conn::LedgerConn;

use super::{
    Derived, LANE_SPAN_MS, decode, decode_doc, effective_limit, encode, encode_doc, from_ms,
    head_string, lane_score, matches, parse_head, redact_url,
};
use crate::audit::{AuditDraft, AuditHead, AuditRecord, seal_batch};
use crate::ledger::{
    ActionFilter, ActionRecord, BreakerAdmission, BreakerScope, BreakerState, Inserted, LaneDue,
    StateStore, StoreError, Urgency,
};
use scripts::{BREAKER_ADMIT, CLAIM_LANES, COMMIT, INSERT, LANE_INDEX, RELEASE, holder_sets};

/// How long `connect` (and each reconnect attempt) may take: a down Redis must fail startup fast,
/// with a clear error, rather than hang the service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound on one command. Our scripts are O(log n); a reply slower than this means Redis is in
/// trouble, and the caller (pipeline, executor) retries.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `PX` we send (ten years): Redis rejects expiries that overflow, and no window or claim
/// legitimately needs more.
const MAX_PX_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// `d` in whole milliseconds, capped at [`MAX_PX_MS`].
fn px_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .min(MAX_PX_MS)
}

/// How many times an audit append reseals after losing a race before giving up as unavailable.
const AUDIT_APPEND_ATTEMPTS: usize = 64;

/// The ledger in Redis. Cheap to clone (clones share one multiplexed connection, which reconnects by
/// itself after an outage).
#[derive(Clone)]
pub struct RedisStore {
    conn: LedgerConn,
    /// `<prefix>{ledger}:`, the start of every key.
    base: Arc<str>,
    /// The audit head this process saw last (`<seq>:<hash>`, `''` for none): the guess each append
    /// starts from, so that an uncontended append is one round trip.
    audit_head: Arc<std::sync::Mutex<String>>,
    /// Serializes this process's audit appends: concurrent alerts would otherwise race each other's
    /// optimistic check-and-push and could starve; only other replicas' appends cause retries now.
    audit_append: Arc<tokio::sync::Mutex<()>>,
    /// Changes waiting for the next group commit ([`commit`]), each with the caller to answer.
    audit_queue: Arc<std::sync::Mutex<Vec<commit::Queued>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("base", &self.base)
            .finish()
    }
}

/// Connection trouble (down, timeout, failover, loading, too few replicas for `WAIT`) is
/// [`StoreError::Unavailable`] and worth retrying; anything else (a script bug, wrong data type,
/// auth) is not.
fn redis_err(context: &str, e: RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
            // A failover in progress: the sentinels name no reachable primary yet, or the
            // cluster has no connection to the slot's node yet.
            | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::ClusterConnectionNotFound
        );
    if transient {
        StoreError::Unavailable(format!("{context}: {e}"))
    } else {
        StoreError::Other(format!("{context}: {e}"))
    }
}

impl RedisStore {
    /// Connect to one node at `url` and keep every key under `prefix` (e.g. `deprovd:`), with
    /// `relaxed` durability (tests and tools; the service opens [`RedisStore::open`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        Self::open(&RedisConfig::single(url, prefix)).await
    }

    /// Connect as `[state.redis]` says: one node, a Cluster or a Sentinel-watched primary; check
    /// that the server meets the configured [`Durability`] (else [`StoreError::Refused`], listing
    /// what is wrong); load the scripts. Fails within about [`CONNECT_TIMEOUT`] with
    /// [`StoreError::Unavailable`] when Redis is down or unreachable; an unparsable URL is
    /// [`StoreError::Other`]. Error messages show URLs with their credentials redacted.
    pub async fn open(config: &RedisConfig) -> Result<RedisStore, StoreError> {
        let base: Arc<str> = Arc::from(format!("{}{{ledger}}:", config.key_prefix));
        let fence = format!("{base}wait-fence");
        let wait = (config.durability == Durability::Replicas).then(|| conn::WaitFor {
            replicas: config.replicas,
            timeout_ms: px_ms(config.wait_timeout).max(1),
            fence: fence.clone(),
        });
        let (conn, shown) = match config.topology() {
            Topology::Single(url) => (
                connect_single(url, wait).await?,
                format!("`{}`", redact_url(url)),
            ),
            Topology::Cluster(urls) => (
                connect_cluster(urls, wait).await?,
                format!("cluster {}", shown_list(urls)),
            ),
            Topology::Sentinel(s) => (
                connect_sentinel(s, wait).await?,
                format!(
                    "sentinel master `{}` via {}",
                    s.master_name,
                    shown_list(&s.urls)
                ),
            ),
        };
        durability::check(&conn, config, &fence, &shown).await?;
        // Load the scripts now, so that the first insert is already a single `EVALSHA` round trip and
        // a Redis that refuses scripts (ACL, disabled Lua) fails startup rather than the first alert.
        let mut loader = conn.without_wait();
        for script in [
            &*INSERT,
            &*RELEASE,
            &*COMMIT,
            &*BREAKER_ADMIT,
            &*CLAIM_LANES,
            &*LANE_INDEX,
        ] {
            script
                .prepare_invoke()
                .load_async(&mut loader)
                .await
                .map_err(|e| {
                    redis_err(
                        &format!("loading the ledger scripts into Redis at {shown}"),
                        e,
                    )
                })?;
        }
        let store = RedisStore {
            conn,
            base,
            audit_head: Arc::default(),
            audit_append: Arc::default(),
            audit_queue: Arc::default(),
        };
        store.index_lanes().await?;
        Ok(store)
    }

    /// Give every due action its lane entry: a ledger written before lanes existed (or by an older
    /// replica) has due actions that no lane holds, and the executor claims only through lanes.
    /// Idempotent and safe beside running replicas ([`LANE_INDEX`] re-checks each entry); costs
    /// one read of the due index, which holds only unfinished work.
    async fn index_lanes(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let due: Vec<String> = ::redis::cmd("ZRANGE")
            .arg(self.index("due"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("reading the due index", e))?;
        for chunk in due.chunks(256) {
            let mut call = LANE_INDEX.prepare_invoke();
            call.arg(&*self.base);
            let mut any = false;
            for rec in self.fetch(chunk).await?.into_iter().flatten() {
                let d = Derived::of(&rec);
                if let (Some(due), Some(score)) = (d.due_ms, d.lane_score()) {
                    call.key(self.key("lane", d.connector))
                        .arg(&rec.key)
                        .arg(due)
                        .arg(score);
                    any = true;
                }
            }
            if any {
                let _: i64 = call
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| redis_err("indexing due actions by connector", e))?;
            }
        }
        Ok(())
    }

    fn key(&self, kind: &str, id: &str) -> String {
        let mut k = String::with_capacity(self.base.len() + kind.len() + id.len() + 1);
        k.push_str(&self.base);
        k.push_str(kind);
        k.push(':');
        k.push_str(id);
        k
    }

    fn index(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }

    /// Records and their linked alerts for `keys`, in one round trip; `None` for a missing record.
    async fn fetch(&self, keys: &[String]) -> Result<Vec<Option<ActionRecord>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for k in keys {
            pipe.cmd("GET").arg(self.key("action", k));
            pipe.cmd("ZRANGE").arg(self.key("linked", k)).arg(0).arg(-1);
        }
        let mut conn = self.conn.clone();
        let values: Vec<Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("reading actions", e))?;
        if values.len() != keys.len() * 2 {
            return Err(StoreError::Other(format!(
                "Redis answered {} replies to {} commands",
                values.len(),
                keys.len() * 2
            )));
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut values = values.into_iter();
        for k in keys {
            let (Some(raw), Some(linked)) = (values.next(), values.next()) else {
                break;
            };
            let raw: Option<Vec<u8>> =
                ::redis::from_redis_value(raw).map_err(|e| StoreError::Corrupt {
                    key: k.clone(),
                    reason: format!("record is not a string: {e}"),
                })?;
            let linked: Vec<String> =
                ::redis::from_redis_value(linked).map_err(|e| StoreError::Corrupt {
                    key: k.clone(),
                    reason: format!("linked alerts are not a set of strings: {e}"),
                })?;
            out.push(match raw {
                None => None,
                Some(raw) => Some(with_linked(decode(k, &raw)?, linked)),
            });
        }
        Ok(out)
    }
}

/// `urls` with credentials redacted, for messages.
fn shown_list(urls: &[String]) -> String {
    let shown: Vec<String> = urls
        .iter()
        .map(|u| format!("`{}`", redact_url(u)))
        .collect();
    shown.join(", ")
}

fn bad_url(shown: &str, e: RedisError) -> StoreError {
    StoreError::Other(format!(
        "invalid Redis URL `{shown}`: {e}; expected `redis://[user][:password@]host[:port][/db]`"
    ))
}

/// Bound `connecting` by [`CONNECT_TIMEOUT`] (plus a margin): a down Redis fails startup fast.
async fn bounded<T>(
    what: &str,
    connecting: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_millis(500), connecting)
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "{what} took longer than {CONNECT_TIMEOUT:?}; is it running and reachable?"
            ))
        })?
        .map_err(|e| redis_err(what, e))
}

async fn connect_single(url: &str, wait: Option<conn::WaitFor>) -> Result<LedgerConn, StoreError> {
    let shown = redact_url(url);
    let client = Client::open(url).map_err(|e| bad_url(&shown, e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        // Reconnects happen in the background after an outage; keep each round short so that
        // callers see `Unavailable` (and retry on their own schedule) instead of waiting.
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let manager = bounded(
        &format!("connecting to Redis at `{shown}`"),
        ConnectionManager::new_with_config(client, config),
    )
    .await?;
    Ok(LedgerConn::single(manager, wait))
}

async fn connect_cluster(
    urls: &[String],
    wait: Option<conn::WaitFor>,
) -> Result<LedgerConn, StoreError> {
    let shown = shown_list(urls);
    let client = ::redis::cluster::ClusterClientBuilder::new(urls.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        // MOVED/ASK and a failover's CLUSTERDOWN are retried inside the client a few times, then
        // the caller sees `Unavailable` and retries on its own schedule.
        .retries(3)
        .build()
        .map_err(|e| bad_url(&shown, e))?;
    let conn = bounded(
        &format!("connecting to Redis Cluster at {shown}"),
        client.get_async_connection(),
    )
    .await?;
    Ok(LedgerConn::cluster(conn, wait))
}

async fn connect_sentinel(
    s: &SentinelConfig,
    wait: Option<conn::WaitFor>,
) -> Result<LedgerConn, StoreError> {
    let shown = shown_list(&s.urls);
    let mut node = ::redis::RedisConnectionInfo::default().set_db(s.db);
    if let Some(user) = &s.username {
        node = node.set_username(user);
    }
    if let Some(p) = &s.password {
        let secret = crate::config::SecretRef::parse(p)
            .and_then(|r| r.resolve())
            .map_err(|e| StoreError::Other(format!("[state.redis] sentinel.password: {e}")))?;
        node = node.set_password(secrecy::ExposeSecret::expose_secret(&secret));
    }
    let node =
        ::redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(node);
    let conn = bounded(
        &format!(
            "finding the primary `{}` through the sentinels at {shown}",
            s.master_name
        ),
        conn::SentinelConn::connect(
            &s.urls,
            &s.master_name,
            node,
            s.db,
            CONNECT_TIMEOUT,
            RESPONSE_TIMEOUT,
        ),
    )
    .await?;
    Ok(LedgerConn::sentinel(conn, wait))
}

/// `a` with the alerts coalesced into it (kept in their own sorted set) merged back.
fn with_linked(mut a: ActionRecord, linked: Vec<String>) -> ActionRecord {
    for l in linked {
        if !a.linked_alerts.contains(&l) {
            a.linked_alerts.push(l);
        }
    }
    a
}

/// ARGV value for an optional string.
fn opt(s: Option<&str>) -> &str {
    s.unwrap_or("")
}

fn due_arg(d: &Derived<'_>) -> String {
    d.due_ms.map(|ms| ms.to_string()).unwrap_or_default()
}

fn lane_arg(d: &Derived<'_>) -> String {
    d.lane_score().map(|s| s.to_string()).unwrap_or_default()
}

/// [`CLAIM_LANES`]'s per-rank bounds for `now_ms`: lowest score, last due score, highest score.
fn rank_bounds(now_ms: i64) -> Vec<i64> {
    (0..Urgency::LEVELS)
        .flat_map(|r| {
            let lo = lane_score(r, 0);
            [lo, lane_score(r, now_ms), lo + LANE_SPAN_MS - 1]
        })
        .collect()
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = ::redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_err("pinging Redis", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_topology;
