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
//! Audit appends are optimistic: the client seals the batch after the head it last saw and the
//! [`AUDIT_APPEND`] script pushes it only if the head is still that one (else it answers the current
//! head and the client reseals and retries). Redis has no SHA-256 in Lua, so hashing must happen in
//! the client; the check-and-push keeps the chain single even with many replicas appending, and a
//! replica that appends alone pays one round trip.
//!
//! Linked alerts live in their own sorted set instead of inside the JSON so that the insert script never
//! decodes and re-encodes a record (Lua's cjson turns `[]` into `{}` and rounds floats); `get_action`
//! merges them back into `linked_alerts`.

mod actions;
mod audit;
mod breaker;
mod docs;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, Script, ServerErrorKind, Value};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    ALL_STATES, Derived, LANE_SPAN_MS, decode, effective_limit, encode, from_ms, head_string,
    lane_score, matches, parse_head, redact_url,
};
use crate::audit::{AuditDraft, AuditHead, AuditRecord, seal_all};
use crate::ledger::{
    ActionFilter, ActionRecord, ActionState, BreakerAdmission, BreakerScope, BreakerState,
    Inserted, LaneDue, StateStore, StoreError, Urgency,
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

/// KEYS: record, coalesce slot, lane. ARGV: base, key, json, created ms, due ms or '', pending 0/1,
/// absorbs 0/1, window ms, linked alert or '', now ms, state, subject, alert id or '',
/// `,state,state,` of the holder states that absorb this action, `,state,` of the holder states
/// that this action supersedes, lane score (see [`ActionState::absorbs`](crate::ledger::ActionState::absorbs)).
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
if ARGV[5] ~= '' then
  redis.call('ZADD', base .. 'due', ARGV[5], key)
  redis.call('ZADD', KEYS[3], ARGV[16], key)
end
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

/// KEYS: record, coalesce slot, lane. ARGV: base, key, json, created ms, due ms or '', pending 0/1,
/// absorbs 0/1, state, subject, alert id or '', lane score or ''. Returns 0 when the record does
/// not exist.
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
  redis.call('ZADD', KEYS[3], ARGV[11], key)
else
  redis.call('ZREM', base .. 'due', key)
  redis.call('ZREM', KEYS[3], key)
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

/// KEYS: one lane per lane asked for. ARGV: base, owner, ttl ms, rank count `L`, then per rank
/// (most urgent first) its lowest score, its last due score (rank base + now ms) and its highest
/// score, then per lane the number to claim. For each lane and rank: count the due entries, note
/// the earliest, claim (`SET NX PX`, as [`ActionStore::claim`](crate::ledger::ActionStore::claim))
/// due entries in score order until the lane's number is reached — examining at most twice that
/// plus 16, so entries other executors hold cost a bounded amount — and note the earliest entry not
/// yet due. Returns per lane `{claimed keys, due and not claimed, earliest due ms or -1, next due
/// ms or -1}` (times without the rank base). Claim keys are derived from `base` (the `{ledger}`
/// slot, as every key here).
static CLAIM_LANES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, owner, ttl, levels = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
for i = 1, #KEYS do
  local lane = KEYS[i]
  local limit = tonumber(ARGV[4 + 3 * levels + i])
  local claimed = {}
  local due, oldest, nxt = 0, -1, -1
  local budget = limit * 2 + 16
  for r = 0, levels - 1 do
    local lo, hi, top = ARGV[5 + 3 * r], ARGV[6 + 3 * r], ARGV[7 + 3 * r]
    local n = redis.call('ZCOUNT', lane, lo, hi)
    if n > 0 then
      due = due + n
      local first = redis.call('ZRANGEBYSCORE', lane, lo, hi, 'WITHSCORES', 'LIMIT', 0, 1)
      local at = tonumber(first[2]) - tonumber(lo)
      if oldest < 0 or at < oldest then oldest = at end
      local offset = 0
      while #claimed < limit and budget > 0 and offset < n do
        local page = redis.call('ZRANGEBYSCORE', lane, lo, hi, 'LIMIT', offset,
          math.min(budget, limit - #claimed + 8))
        if #page == 0 then break end
        for _, k in ipairs(page) do
          budget = budget - 1
          if #claimed < limit and redis.call('SET', base .. 'claim:' .. k, owner, 'NX', 'PX', ttl) then
            claimed[#claimed + 1] = k
          end
        end
        offset = offset + #page
      end
    end
    local later = redis.call('ZRANGEBYSCORE', lane, '(' .. hi, top, 'WITHSCORES', 'LIMIT', 0, 1)
    if #later > 0 then
      local at = tonumber(later[2]) - tonumber(lo)
      if nxt < 0 or at < nxt then nxt = at end
    end
  end
  out[#out + 1] = {claimed, due - #claimed, oldest, nxt}
end
return out
"#,
    )
});

/// KEYS: the lane of each action given. ARGV: base, then per action its key, due ms and lane
/// score. Indexes each action in its lane if the due index still holds it at that due time (so a
/// concurrent update is never undone), leaving an existing lane entry alone. Returns how many were
/// added.
static LANE_INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local added = 0
for i = 1, #KEYS do
  local key, due, score = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  if redis.call('ZSCORE', ARGV[1] .. 'due', key) == due then
    added = added + redis.call('ZADD', KEYS[i], 'NX', score, key)
  end
end
return added
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
        for script in [
            &*INSERT,
            &*PUT,
            &*RELEASE,
            &*AUDIT_APPEND,
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
                        &format!("loading the ledger scripts into Redis at `{shown}`"),
                        e,
                    )
                })?;
        }
        let store = RedisStore {
            conn,
            base: Arc::from(format!("{prefix}{{ledger}}:")),
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
mod tests;
