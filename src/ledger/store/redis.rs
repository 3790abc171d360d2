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
//! Audit appends are optimistic: the client seals the batch after the head it last saw and the
//! [`AUDIT_APPEND`] script pushes it only if the head is still that one (else it answers the current
//! head and the client reseals and retries). Redis has no SHA-256 in Lua, so hashing must happen in
//! the client; the check-and-push keeps the chain single even with many replicas appending, and a
//! replica that appends alone pays one round trip.
//!
//! Linked alerts live in their own sorted set instead of inside the JSON so that the insert script never
//! decodes and re-encodes a record (Lua's cjson turns `[]` into `{}` and rounds floats); `get_action`
//! merges them back into `linked_alerts`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, Script, ServerErrorKind, Value};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    ALL_STATES, Derived, decode, effective_limit, encode, from_ms, head_string, matches,
    parse_head, redact_url,
};
use crate::audit::{AuditDraft, AuditHead, AuditRecord, seal_all};
use crate::ledger::{
    ActionFilter, ActionRecord, ActionState, BreakerAdmission, BreakerScope, BreakerState,
    Inserted, StateStore, StoreError,
};

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

/// KEYS: record, coalesce slot. ARGV: base, key, json, created ms, due ms or '', pending 0/1,
/// absorbs 0/1, window ms, linked alert or '', now ms, state, subject, alert id or '',
/// `,state,state,` of the holder states that absorb this action, `,state,` of the holder states
/// that this action supersedes (see [`ActionState::absorbs`](crate::ledger::ActionState::absorbs)).
/// Returns `{'duplicate'}`, `{'coalesced', holder}`, `{'superseded', holder}` or `{'new'}`.
static INSERT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'duplicate'}
end
local base = ARGV[1]
local superseded = nil
local holder = redis.call('GET', KEYS[2])
if holder then
  local rec = redis.call('GET', base .. 'action:' .. holder)
  if rec then
    local ok, doc = pcall(cjson.decode, rec)
    if ok and type(doc) == 'table' and type(doc.state) == 'string'
        and string.find(ARGV[15], ',' .. doc.state .. ',', 1, true) then
      superseded = holder
    elseif ok and type(doc) == 'table' and type(doc.state) == 'string'
        and string.find(ARGV[14], ',' .. doc.state .. ',', 1, true) then
      if ARGV[9] ~= '' then
        if redis.call('ZADD', base .. 'linked:' .. holder, 'NX', ARGV[10], ARGV[9]) == 1 then
          local created = redis.call('ZSCORE', base .. 'created', holder) or ARGV[10]
          redis.call('ZADD', base .. 'alert:' .. ARGV[9], created, holder)
        end
      end
      return {'coalesced', holder}
    end
  end
end
local key = ARGV[2]
redis.call('SET', KEYS[1], ARGV[3])
if ARGV[5] ~= '' then redis.call('ZADD', base .. 'due', ARGV[5], key) end
if ARGV[6] == '1' then redis.call('SADD', base .. 'pending', key) end
redis.call('ZADD', base .. 'created', ARGV[4], key)
redis.call('ZADD', base .. 'state:' .. ARGV[11], ARGV[4], key)
redis.call('ZADD', base .. 'subject:' .. ARGV[12], ARGV[4], key)
if ARGV[13] ~= '' then redis.call('ZADD', base .. 'alert:' .. ARGV[13], ARGV[4], key) end
if ARGV[7] == '1' and tonumber(ARGV[8]) > 0 then
  redis.call('SET', KEYS[2], key, 'PX', ARGV[8])
end
if superseded then return {'superseded', superseded} end
return {'new'}
"#,
    )
});

/// KEYS: record, coalesce slot. ARGV: base, key, json, created ms, due ms or '', pending 0/1,
/// absorbs 0/1, state, subject, alert id or ''. Returns 0 when the record does not exist.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local base = ARGV[1]
local key = ARGV[2]
local ok, doc = pcall(cjson.decode, old)
if ok and type(doc) == 'table' then
  if type(doc.state) == 'string' and doc.state ~= ARGV[8] then
    redis.call('ZREM', base .. 'state:' .. doc.state, key)
  end
  if type(doc.subject) == 'string' and doc.subject ~= ARGV[9] then
    redis.call('ZREM', base .. 'subject:' .. doc.subject, key)
  end
end
redis.call('SET', KEYS[1], ARGV[3])
if ARGV[5] ~= '' then
  redis.call('ZADD', base .. 'due', ARGV[5], key)
else
  redis.call('ZREM', base .. 'due', key)
end
if ARGV[6] == '1' then
  redis.call('SADD', base .. 'pending', key)
else
  redis.call('SREM', base .. 'pending', key)
end
redis.call('ZADD', base .. 'created', ARGV[4], key)
redis.call('ZADD', base .. 'state:' .. ARGV[8], ARGV[4], key)
redis.call('ZADD', base .. 'subject:' .. ARGV[9], ARGV[4], key)
if ARGV[10] ~= '' then redis.call('ZADD', base .. 'alert:' .. ARGV[10], ARGV[4], key) end
if ARGV[7] == '0' and redis.call('GET', KEYS[2]) == key then
  redis.call('DEL', KEYS[2])
end
return 1
"#,
    )
});

/// KEYS: claim. ARGV: owner. Deletes the claim only if `owner` holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// KEYS: audit list, audit head. ARGV: expected head (`''` for an empty trail), new head, records….
/// Returns `{'ok'}`, or `{'conflict', current head}` without writing anything.
static AUDIT_APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[2]) or ''
if cur ~= ARGV[1] then return {'conflict', cur} end
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('SET', KEYS[2], ARGV[2])
return {'ok'}
"#,
    )
});

/// KEYS: none (every key is `ARGV[1]` + name, all in the `{ledger}` slot). ARGV: base, subject,
/// now ms, then per scope: name, threshold, cutoff ms (`now - window`), window ms. For each scope:
/// drop subjects admitted at or before the cutoff, admit the subject at `now` (`ZADD` keeps one
/// entry per subject), count, and set the open flag when the count exceeds the threshold and it was
/// not set. Returns `subjects, open, tripped` per scope, flattened.
static BREAKER_ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base = ARGV[1]
local out = {}
for i = 4, #ARGV, 4 do
  local set = base .. 'breaker:subjects:' .. ARGV[i]
  local flag = base .. 'breaker:open:' .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', set, '-inf', ARGV[i + 2])
  redis.call('ZADD', set, ARGV[3], ARGV[2])
  redis.call('PEXPIRE', set, ARGV[i + 3])
  local n = redis.call('ZCARD', set)
  local open = redis.call('EXISTS', flag)
  local tripped = 0
  if open == 0 and n > tonumber(ARGV[i + 1]) then
    redis.call('SET', flag, ARGV[3])
    open = 1
    tripped = 1
  end
  out[#out + 1] = n
  out[#out + 1] = open
  out[#out + 1] = tripped
end
return out
"#,
    )
});

/// A queued audit batch and the caller waiting for its sealed records.
type AuditWaiter = (
    Vec<AuditDraft>,
    tokio::sync::oneshot::Sender<Result<Vec<AuditRecord>, StoreError>>,
);

/// How many times an audit append reseals after losing a race before giving up as unavailable.
const AUDIT_APPEND_ATTEMPTS: usize = 64;

/// `,state,state,` of the states for which `pred` holds (`,` when none).
fn state_set(pred: impl Fn(ActionState) -> bool) -> String {
    let mut s = String::from(",");
    for st in ALL_STATES.iter().copied().filter(|s| pred(*s)) {
        s.push_str(st.as_str());
        s.push(',');
    }
    s
}

/// For each state an action may be inserted in: the holder states that absorb it and the holder
/// states it supersedes, computed from [`ActionState::absorbs`](crate::ledger::ActionState::absorbs)
/// and [`ActionState::superseded_by`](crate::ledger::ActionState::superseded_by) so that the script
/// and the trait cannot disagree.
static HOLDER_SETS: LazyLock<Vec<(ActionState, String, String)>> = LazyLock::new(|| {
    ALL_STATES
        .iter()
        .map(|&incoming| {
            (
                incoming,
                state_set(|h| h.absorbs(incoming)),
                state_set(|h| h.superseded_by(incoming)),
            )
        })
        .collect()
});

/// The (absorbing, superseded) holder state sets for an action inserted in state `incoming`.
fn holder_sets(incoming: ActionState) -> (&'static str, &'static str) {
    HOLDER_SETS
        .iter()
        .find(|(s, _, _)| *s == incoming)
        .map(|(_, a, s)| (a.as_str(), s.as_str()))
        .unwrap_or((",", ","))
}

/// The ledger in Redis. Cheap to clone (clones share one multiplexed connection, which reconnects by
/// itself after an outage).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    /// `<prefix>{ledger}:`, the start of every key.
    base: Arc<str>,
    /// The audit head this process saw last (`<seq>:<hash>`, `''` for none): the guess each append
    /// starts from, so that an uncontended append is one round trip.
    audit_head: Arc<std::sync::Mutex<String>>,
    /// Serializes this process's audit appends: concurrent alerts would otherwise race each other's
    /// optimistic check-and-push and could starve; only other replicas' appends cause retries now.
    audit_append: Arc<tokio::sync::Mutex<()>>,
    /// Batches waiting for the next group commit, each with the caller to answer.
    audit_queue: Arc<std::sync::Mutex<Vec<AuditWaiter>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("base", &self.base)
            .finish()
    }
}

/// Connection trouble (down, timeout, failover, loading) is [`StoreError::Unavailable`] and worth
/// retrying; anything else (a script bug, wrong data type, auth) is not.
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
        );
    if transient {
        StoreError::Unavailable(format!("{context}: {e}"))
    } else {
        StoreError::Other(format!("{context}: {e}"))
    }
}

impl RedisStore {
    /// Connect to `url` and keep every key under `prefix` (e.g. `deprovd:`). Fails within about
    /// [`CONNECT_TIMEOUT`] with [`StoreError::Unavailable`] when Redis is down or unreachable; an
    /// unparsable URL is [`StoreError::Other`]. Error messages show the URL with its credentials
    /// redacted.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let shown = redact_url(url);
        let client = Client::open(url).map_err(|e| {
            StoreError::Other(format!(
                "invalid Redis URL `{shown}`: {e}; expected `redis://[user][:password@]host[:port][/db]`"
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // Reconnects happen in the background after an outage; keep each round short so that
            // callers see `Unavailable` (and retry on their own schedule) instead of waiting.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT + Duration::from_millis(500),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "connecting to Redis at `{shown}` took longer than {CONNECT_TIMEOUT:?}; is it running and reachable?"
            ))
        })?
        .map_err(|e| redis_err(&format!("connecting to Redis at `{shown}`"), e))?;
        // Load the scripts now, so that the first insert is already a single `EVALSHA` round trip and
        // a Redis that refuses scripts (ACL, disabled Lua) fails startup rather than the first alert.
        let mut loader = conn.clone();
        for script in [&*INSERT, &*PUT, &*RELEASE, &*AUDIT_APPEND, &*BREAKER_ADMIT] {
            script
                .prepare_invoke()
                .load_async(&mut loader)
                .await
                .map_err(|e| {
                    redis_err(
                        &format!("loading the ledger scripts into Redis at `{shown}`"),
                        e,
                    )
                })?;
        }
        Ok(RedisStore {
            conn,
            base: Arc::from(format!("{prefix}{{ledger}}:")),
            audit_head: Arc::default(),
            audit_append: Arc::default(),
            audit_queue: Arc::default(),
        })
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
                Some(raw) => {
                    let mut a = decode(k, &raw)?;
                    for l in linked {
                        if !a.linked_alerts.contains(&l) {
                            a.linked_alerts.push(l);
                        }
                    }
                    Some(a)
                }
            });
        }
        Ok(out)
    }
}

/// ARGV value for an optional string.
fn opt(s: Option<&str>) -> &str {
    s.unwrap_or("")
}

fn due_arg(d: &Derived<'_>) -> String {
    d.due_ms.map(|ms| ms.to_string()).unwrap_or_default()
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
        let d = Derived::of(action);
        let json = encode(action)?;
        let mut conn = self.conn.clone();
        let existed: i64 = PUT
            .key(self.key("action", &action.key))
            .key(self.key("coalesce", &d.coalesce))
            .arg(&*self.base)
            .arg(&action.key)
            .arg(json)
            .arg(d.created_ms)
            .arg(due_arg(&d))
            .arg(flag(d.pending))
            .arg(flag(d.absorbs))
            .arg(d.state)
            .arg(d.subject)
            .arg(opt(d.alert_id))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_err(&format!("updating action `{}`", action.key), e))?;
        if existed == 1 {
            Ok(())
        } else {
            Err(StoreError::Other(format!(
                "cannot update action `{}`: no such action (insert it with insert_action first)",
                action.key
            )))
        }
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

    async fn list_actions(&self, filter: &ActionFilter) -> Result<Vec<ActionRecord>, StoreError> {
        let limit = effective_limit(filter.limit);
        // Walk the narrowest index the filter allows, newest first, re-checking the whole filter on
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
            let keys: Vec<String> = ::redis::cmd("ZREVRANGE")
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

    async fn put_json(
        &self,
        ns: &str,
        key: &str,
        doc: &serde_json::Value,
        only_if_absent: bool,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(doc)
            .map_err(|e| StoreError::Other(format!("cannot encode document `{ns}/{key}`: {e}")))?;
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
        raw.map(|b| {
            serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                key: format!("{ns}/{key}"),
                reason: format!("not a JSON document: {e}"),
            })
        })
        .transpose()
    }

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
        let mut call = BREAKER_ADMIT.arg(&*self.base);
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

impl RedisStore {
    /// One optimistic check-and-push of `drafts` after the last head this process saw; reseals and
    /// retries when another replica appended in between.
    async fn append_audit_now(
        &self,
        drafts: Vec<AuditDraft>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut expected = self.audit_head.lock().expect("not poisoned").clone();
        for _ in 0..AUDIT_APPEND_ATTEMPTS {
            let head = parse_head(&expected)?;
            let sealed = seal_all(drafts.clone(), head.as_ref());
            let new_head = head_string(
                sealed
                    .last()
                    .map(|r| AuditHead {
                        seq: r.seq,
                        hash: r.hash.clone(),
                    })
                    .as_ref(),
            );
            let mut call = AUDIT_APPEND.key(self.index("audit"));
            call.key(self.key("audit", "head"))
                .arg(&expected)
                .arg(&new_head);
            for r in &sealed {
                call.arg(serde_json::to_vec(r).map_err(|e| {
                    StoreError::Other(format!("cannot encode audit record {}: {e}", r.seq))
                })?);
            }
            let mut conn = self.conn.clone();
            let reply: Vec<String> = call
                .invoke_async(&mut conn)
                .await
                .map_err(|e| redis_err("appending to the audit trail", e))?;
            match reply.as_slice() {
                [ok] if ok == "ok" => {
                    *self.audit_head.lock().expect("not poisoned") = new_head;
                    return Ok(sealed);
                }
                [c, current] if c == "conflict" => {
                    // Another appender moved the head: reseal after it.
                    expected.clone_from(current);
                    *self.audit_head.lock().expect("not poisoned") = current.clone();
                }
                other => {
                    return Err(StoreError::Other(format!(
                        "unexpected reply from the audit append script: {other:?}"
                    )));
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "the audit head kept moving during {AUDIT_APPEND_ATTEMPTS} append attempts; retry"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::store::conformance;

    /// The shared test Redis.
    const URL: &str = "redis://127.0.0.1:6379/0";

    /// A random prefix, so parallel tests (and other helpers) never see each other's keys.
    fn prefix() -> String {
        format!("deprovd-test-{}:", uuid::Uuid::new_v4().simple())
    }

    /// Delete every key under `prefix`; returns how many there were.
    async fn cleanup(store: &RedisStore, prefix: &str) -> usize {
        let mut conn = store.conn.clone();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            if !keys.is_empty() {
                deleted += keys.len();
                let _: () = ::redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            if next == 0 {
                return deleted;
            }
            cursor = next;
        }
    }

    macro_rules! conformance_tests {
        ($($name:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let prefix = prefix();
                let store = RedisStore::connect(URL, &prefix).await.unwrap();
                let shared: Arc<dyn StateStore> = Arc::new(store.clone());
                // Run the case in its own task so that keys are cleaned up even when it fails.
                let outcome = tokio::spawn(conformance::$name(shared)).await;
                cleanup(&store, &prefix).await;
                if let Err(e) = outcome {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        )*};
    }

    conformance::for_each_case!(conformance_tests);

    async fn exists(store: &RedisStore, key: &str) -> bool {
        let mut conn = store.conn.clone();
        let n: i64 = ::redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        n == 1
    }

    #[tokio::test]
    async fn failed_action_deletes_its_coalesce_key_but_succeeded_keeps_it() {
        // The insert script also ignores a slot whose holder no longer absorbs, so the conformance
        // suite cannot see the slot itself; this checks the key is really gone (no stale slot left
        // to absorb alerts if the action were re-planned).
        let prefix = prefix();
        let store = RedisStore::connect(URL, &prefix).await.unwrap();
        let now = Utc::now();
        let mut a = conformance::record("a", "alice", now);
        let mut b = conformance::record("b", "bob", now);
        for r in [&a, &b] {
            store
                .insert_action(r, Duration::from_secs(60), None)
                .await
                .unwrap();
        }
        let slot = |r: &ActionRecord| store.key("coalesce", &Derived::of(r).coalesce);
        assert!(exists(&store, &slot(&a)).await && exists(&store, &slot(&b)).await);
        a.state = crate::ledger::ActionState::Failed;
        b.state = crate::ledger::ActionState::Succeeded;
        store.put_action(&a).await.unwrap();
        store.put_action(&b).await.unwrap();
        let (a_slot, b_slot) = (
            exists(&store, &slot(&a)).await,
            exists(&store, &slot(&b)).await,
        );
        cleanup(&store, &prefix).await;
        assert!(!a_slot, "failed action kept its coalesce slot");
        assert!(b_slot, "succeeded action lost its coalesce slot");
    }

    /// A loopback TCP proxy to the test Redis that can be cut, to simulate an outage without touching
    /// the shared server. Aborting the task drops the listener and every proxied connection.
    async fn proxy(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:6379").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn outage_is_unavailable_and_the_store_recovers_when_redis_returns() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = proxy(listener).await;
        let prefix = prefix();
        let store = RedisStore::connect(&format!("redis://{addr}/0"), &prefix)
            .await
            .unwrap();
        let a = conformance::record("a", "alice", Utc::now());
        store
            .insert_action(&a, Duration::from_secs(60), None)
            .await
            .unwrap();

        up.abort();
        let _ = up.await;
        let err = store.ping().await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        let b = conformance::record("b", "bob", Utc::now());
        let err = store
            .insert_action(&b, Duration::from_secs(60), None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");

        let up = proxy(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while store.ping().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the store never reconnected"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let inserted = store.insert_action(&b, Duration::from_secs(60), None).await;
        let kept = store.get_action(&a.key).await;
        cleanup(&store, &prefix).await;
        up.abort();
        assert_eq!(inserted.unwrap(), Inserted::New);
        assert_eq!(kept.unwrap(), Some(a));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_appending_at_once_form_one_audit_chain() {
        // Separate stores have separate cached heads, like two processes: every race is a conflict
        // that the script must catch.
        let prefix = prefix();
        let a = RedisStore::connect(URL, &prefix).await.unwrap();
        let b = RedisStore::connect(URL, &prefix).await.unwrap();
        let draft = |who: &str, i: usize| {
            crate::audit::AuditDraft::new(
                crate::audit::AuditKind::ApiCall,
                crate::audit::Actor::system(who),
                serde_json::json!({ "i": i }),
            )
        };
        let (ra, rb) = tokio::join!(
            async {
                for i in 0..40 {
                    a.append_audit(vec![draft("a", i)]).await.unwrap();
                }
            },
            async {
                for i in 0..40 {
                    b.append_audit(vec![draft("b", i), draft("b", i)])
                        .await
                        .unwrap();
                }
            }
        );
        let ((), ()) = (ra, rb);
        let all = a.audit_range(1, 0).await;
        let head = b.audit_head().await;
        cleanup(&a, &prefix).await;
        let all = all.unwrap();
        assert_eq!(all.len(), 120);
        assert_eq!(crate::audit::verify(&all), Ok(120));
        assert_eq!(head.unwrap().unwrap().hash, all[119].hash);
    }

    #[tokio::test]
    async fn config_opens_a_redis_store_under_its_prefix() {
        let prefix = prefix();
        let config = crate::ledger::store::StoreConfig {
            backend: crate::ledger::store::Backend::Redis,
            redis_url: URL.into(),
            key_prefix: prefix.clone(),
            ..Default::default()
        };
        let store = config.open().await.unwrap();
        let a = conformance::record("a", "alice", Utc::now());
        store
            .insert_action(&a, Duration::from_secs(60), None)
            .await
            .unwrap();
        let direct = RedisStore::connect(URL, &prefix).await.unwrap();
        let seen = direct.get_action(&a.key).await.unwrap();
        cleanup(&direct, &prefix).await;
        assert_eq!(seen, Some(a));
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_fails_fast_as_unavailable() {
        // Bind then drop a listener: nothing listens on that port now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = tokio::time::Instant::now();
        let err = RedisStore::connect(&format!("redis://:hunter2@127.0.0.1:{port}/0"), "deprovd:")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(err.is_retryable());
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );
        let shown = err.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    }

    #[tokio::test]
    async fn connect_with_an_invalid_url_is_not_retryable() {
        let err = RedisStore::connect("http://:hunter2@127.0.0.1/", "deprovd:")
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn records_are_json_under_the_prefix_and_cleanup_finds_them_all() {
        let prefix = prefix();
        let store = RedisStore::connect(URL, &prefix).await.unwrap();
        let a = conformance::record("a", "alice", Utc::now());
        store
            .insert_action(&a, Duration::from_secs(60), None)
            .await
            .unwrap();
        store
            .claim(&a.key, "w", Duration::from_secs(60))
            .await
            .unwrap();

        let mut conn = store.conn.clone();
        let raw: String = ::redis::cmd("GET")
            .arg(format!("{prefix}{{ledger}}:action:{}", a.key))
            .query_async(&mut conn)
            .await
            .unwrap();
        let parsed: ActionRecord = serde_json::from_str(&raw).unwrap();
        assert_eq!(parsed, a);

        // record, due, pending, created, state, subject, alert, coalesce slot, claim.
        assert_eq!(cleanup(&store, &prefix).await, 9);
        assert_eq!(cleanup(&store, &prefix).await, 0);
    }
}
