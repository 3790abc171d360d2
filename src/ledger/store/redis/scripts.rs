//! The Lua scripts the Redis store runs (each one atomic, one round trip), with the argument layout
//! each expects, and the holder-state sets the insert script is given.

use std::sync::LazyLock;

use ::redis::Script;

use crate::ledger::ActionState;

/// KEYS: record, coalesce slot, lane. ARGV: base, key, json, created ms, due ms or '', pending 0/1,
/// absorbs 0/1, window ms, linked alert or '', now ms, state, subject, alert id or '',
/// `,state,state,` of the holder states that absorb this action, `,state,` of the holder states
/// that this action supersedes, lane score (see [`ActionState::absorbs`](crate::ledger::ActionState::absorbs)).
/// Returns `{'duplicate'}`, `{'coalesced', holder}`, `{'superseded', holder}` or `{'new'}`.
pub(super) static INSERT: LazyLock<Script> = LazyLock::new(|| {
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

/// KEYS: one lane per lane asked for. ARGV: base, owner, ttl ms, rank count `L`, then per rank
/// (most urgent first) its lowest score, its last due score (rank base + now ms) and its highest
/// score, then per lane the number to claim. For each lane and rank: count the due entries, note
/// the earliest, claim (`SET NX PX`, as [`ActionStore::claim`](crate::ledger::ActionStore::claim))
/// due entries in score order until the lane's number is reached — examining at most twice that
/// plus 16, so entries other executors hold cost a bounded amount — and note the earliest entry not
/// yet due. Returns per lane `{claimed keys, due and not claimed, earliest due ms or -1, next due
/// ms or -1, claimed records, their linked alerts}` (times without the rank base; a record is nil
/// when missing): claim-and-read, so the executor reads nothing more before it runs an action. Claim keys are derived from `base` (the `{ledger}`
/// slot, as every key here).
pub(super) static CLAIM_LANES: LazyLock<Script> = LazyLock::new(|| {
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
  local records, linked = {}, {}
  for j, k in ipairs(claimed) do
    records[j] = redis.call('GET', base .. 'action:' .. k)
    linked[j] = redis.call('ZRANGE', base .. 'linked:' .. k, 0, -1)
  end
  out[#out + 1] = {claimed, due - #claimed, oldest, nxt, records, linked}
end
return out
"#,
    )
});

/// KEYS: the lane of each action given. ARGV: base, then per action its key, due ms and lane
/// score. Indexes each action in its lane if the due index still holds it at that due time (so a
/// concurrent update is never undone), leaving an existing lane entry alone. Returns how many were
/// added.
pub(super) static LANE_INDEX: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// The group commit: state changes, claim releases and audit records of any number of callers in
/// one atomic run. KEYS: audit list, audit head, then per put its record, coalesce slot and lane,
/// then per release its claim. ARGV: base, expected head (`''` for an empty trail), new head, put
/// count `P`, release count `R`, then per put its key, json, created ms, due ms or '', pending 0/1,
/// absorbs 0/1, state, subject, alert id or '', lane score or '', then per release the
/// owner (as [`RELEASE`]), then the sealed audit records. When records are given and the head is
/// not the expected one, answers `{'conflict', current head}` having written nothing; else applies
/// every put (a put of a missing record is skipped and its key returned), release and record and
/// answers `{'ok', missing keys…}`.
pub(super) static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local base, P, R = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5])
local first = 6 + 10 * P + R
if #ARGV >= first then
  local cur = redis.call('GET', KEYS[2]) or ''
  if cur ~= ARGV[2] then return {'conflict', cur} end
end
local out = {'ok'}
for i = 0, P - 1 do
  local rk, ck, lk = KEYS[3 + 3 * i], KEYS[4 + 3 * i], KEYS[5 + 3 * i]
  local a = 6 + 10 * i
  local key, state, subject = ARGV[a], ARGV[a + 6], ARGV[a + 7]
  local old = redis.call('GET', rk)
  if not old then
    out[#out + 1] = key
  else
    local ok, doc = pcall(cjson.decode, old)
    if ok and type(doc) == 'table' then
      if type(doc.state) == 'string' and doc.state ~= state then
        redis.call('ZREM', base .. 'state:' .. doc.state, key)
      end
      if type(doc.subject) == 'string' and doc.subject ~= subject then
        redis.call('ZREM', base .. 'subject:' .. doc.subject, key)
      end
    end
    local created = ARGV[a + 2]
    redis.call('SET', rk, ARGV[a + 1])
    if ARGV[a + 3] ~= '' then
      redis.call('ZADD', base .. 'due', ARGV[a + 3], key)
      redis.call('ZADD', lk, ARGV[a + 9], key)
    else
      redis.call('ZREM', base .. 'due', key)
      redis.call('ZREM', lk, key)
    end
    if ARGV[a + 4] == '1' then
      redis.call('SADD', base .. 'pending', key)
    else
      redis.call('SREM', base .. 'pending', key)
    end
    redis.call('ZADD', base .. 'created', created, key)
    redis.call('ZADD', base .. 'state:' .. state, created, key)
    redis.call('ZADD', base .. 'subject:' .. subject, created, key)
    if ARGV[a + 8] ~= '' then redis.call('ZADD', base .. 'alert:' .. ARGV[a + 8], created, key) end
    if ARGV[a + 5] == '0' and redis.call('GET', ck) == key then
      redis.call('DEL', ck)
    end
  end
end
for j = 0, R - 1 do
  local claim = KEYS[3 + 3 * P + j]
  if redis.call('GET', claim) == ARGV[6 + 10 * P + j] then redis.call('DEL', claim) end
end
if #ARGV >= first then
  for i = first, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
  redis.call('SET', KEYS[2], ARGV[3])
end
return out
"#,
    )
});

/// KEYS: none (every key is `ARGV[1]` + name, all in the `{ledger}` slot). ARGV: base, subject,
/// now ms, then per scope: name, threshold, cutoff ms (`now - window`), window ms. For each scope:
/// drop subjects admitted at or before the cutoff, admit the subject at `now` (`ZADD` keeps one
/// entry per subject), count, and set the open flag when the count exceeds the threshold and it was
/// not set. Returns `subjects, open, tripped` per scope, flattened.
pub(super) static BREAKER_ADMIT: LazyLock<Script> = LazyLock::new(|| {
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

/// `,state,state,` of the states for which `pred` holds (`,` when none).
fn state_set(pred: impl Fn(ActionState) -> bool) -> String {
    let mut s = String::from(",");
    for st in ActionState::ALL.iter().copied().filter(|s| pred(*s)) {
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
    ActionState::ALL
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
pub(super) fn holder_sets(incoming: ActionState) -> (&'static str, &'static str) {
    HOLDER_SETS
        .iter()
        .find(|(s, _, _)| *s == incoming)
        .map(|(_, a, s)| (a.as_str(), s.as_str()))
        .unwrap_or((",", ","))
}
