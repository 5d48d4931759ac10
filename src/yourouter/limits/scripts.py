"""The Redis backend's Lua scripts: the same window, concurrency and budget rules as `windows.py` and `memory.py`,
run atomically inside Redis (a script runs to completion before any other command).

Numbers: Lua numbers are doubles, so counters and nano-dollar amounts compare exactly up to 2**53 (about nine
million USD of spend per scope and period); replies carry integers only (times in milliseconds)."""

from __future__ import annotations

# Shared by both scripts: sliding windows over a HASH of second -> count.
_WINDOW_LUA = r"""
-- A window is a HASH: field <unix second> -> count, and 't' = the sum of the second fields present, 'o' <= every
-- second present (after a read: the oldest non-empty one), 'n' >= every second present. Reading advances 'o' past
-- the seconds that left the window (deleting them, less 't') and past empty ones: amortised O(1), 'o' only moves on.
local WINDOW = 60
local WINDOW_TTL = 120  -- a window hash outlives its newest bucket; the margin absorbs clock skew between hosts

local function load_window(key, sec)
  local head = redis.call('HMGET', key, 't', 'o', 'n')
  if not head[3] then return {key = key, total = 0} end
  local w = {key = key, total = tonumber(head[1]), oldest = tonumber(head[2]), newest = tonumber(head[3])}
  if w.newest <= sec - WINDOW then  -- all of it has left: start afresh
    redis.call('DEL', key)
    return {key = key, total = 0}
  end
  -- the usual case: the oldest bucket is still in the window and not empty (string fields: no number formatting)
  if w.oldest > sec - WINDOW and tonumber(redis.call('HGET', key, head[2]) or '0') > 0 then return w end
  local o, total = w.oldest, w.total
  while o <= w.newest do
    local raw = redis.call('HGET', key, o)
    local c = tonumber(raw or '0')
    if c > 0 and o > sec - WINDOW then break end
    if raw then
      redis.call('HDEL', key, o)
      total = total - c
    end
    o = o + 1
  end
  redis.call('HSET', key, 't', total, 'o', o)
  w.oldest, w.total = o, total
  return w
end

-- add n (a string) to the bucket of second sec (sec_s as a string)
local function window_add(w, sec, sec_s, n)
  redis.call('HINCRBY', w.key, sec_s, n)
  redis.call('HINCRBY', w.key, 't', n)
  w.total = w.total + tonumber(n)
  if not w.oldest or sec < w.oldest then
    w.oldest = sec
    redis.call('HSET', w.key, 'o', sec_s)
  end
  if not w.newest or sec > w.newest then
    w.newest = sec
    redis.call('HSET', w.key, 'n', sec_s)
    redis.call('EXPIRE', w.key, WINDOW_TTL)  -- a newer bucket: the window lives on
  end
end

-- seconds until the window's sum is at most target; nil if never (only on refusals and full windows: O(window))
local function until_at_most(w, now, target)
  if w.total <= target then return 0 end
  if target < 0 then return nil end
  local total = w.total
  for s = w.oldest, w.newest do
    total = total - tonumber(redis.call('HGET', w.key, s) or '0')
    if total <= target then return math.max(0, s + WINDOW - now) end
  end
  return nil
end

local function oldest_leaves(w, now)
  if w.total <= 0 then return 0 end
  return math.max(0, w.oldest + WINDOW - now)
end

-- seconds as whole milliseconds (replies carry integers); -1 = never or unknown
local function ms(x)
  if x == nil then return -1 end
  return math.floor(x * 1000 + 0.5)
end
"""

ADMIT = _WINDOW_LUA + r"""
-- KEYS, six per charge: rpm window, tpm window, in-flight ZSET, reserved HASH, spend counter, spend init lock
-- ARGV: 'now (s) in-flight expiry (ms)' (one argument, space-separated), request id, init lock (ms), dry (1 = only
--       read), charge count, then seven per charge: rpm, tpm, max concurrency, budget limit (nano-USD) (each -1 =
--       none), when the spend counter expires (unix s, 0 = never), 'tokens reserve (nano-USD)' (one argument),
--       initial spend ('' = none); the first five rarely change, so the caller sends them pre-encoded, and the
--       numbers that change per request come two to an argument (fewer to encode)
-- Reply: {'ok', rows} | {'limited', {{charge, kind, wait ms}...}, rows} | {'init', {{charge, locked}...}}
--        | {'state', rows} | {'duplicate'}; a row per charge, all integers: requests used, requests reset (ms),
--        tokens used, tokens reset (ms), in flight, spend, reserved (nano-USD)
local now_s, expires_ms = string.match(ARGV[1], '^(%S+) (%S+)$')
local now = tonumber(now_s)
local sec = math.floor(now)
local sec_s = string.format('%d', sec)
local now_ms = math.floor(now * 1000)
local request_id, lock_ms = ARGV[2], ARGV[3]
local dry = ARGV[4] == '1'
local n = tonumber(ARGV[5])
local tok, res = {}, {}  -- per charge, as strings
for i = 1, n do
  tok[i], res[i] = string.match(ARGV[5 + (i - 1) * 7 + 6], '^(%S+) (%S+)$')
end

-- 1. Budget counters: set the initial values handed in (only where absent), report those still missing.
local missing = {}
for i = 1, n do
  local k, a = (i - 1) * 6, 5 + (i - 1) * 7
  if tonumber(ARGV[a + 4]) >= 0 and redis.call('EXISTS', KEYS[k + 5]) == 0 then
    if ARGV[a + 7] ~= '' then
      redis.call('SET', KEYS[k + 5], ARGV[a + 7])
      local expires_at = tonumber(ARGV[a + 5])
      if expires_at > 0 then redis.call('EXPIRE', KEYS[k + 5], math.max(1, math.floor(expires_at - now))) end
      redis.call('DEL', KEYS[k + 6])
    else
      local locked = redis.call('SET', KEYS[k + 6], request_id, 'NX', 'PX', lock_ms)
      missing[#missing + 1] = {i, locked and 1 or 0}
    end
  end
end
if #missing > 0 then return {'init', missing} end

-- 2. Read and check every scope; nothing is charged unless every check passes.
local failures, scopes = {}, {}
for i = 1, n do
  local k, a = (i - 1) * 6, 5 + (i - 1) * 7
  local rpm, tpm, maxc = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local limit, tokens, reserve = tonumber(ARGV[a + 4]), tonumber(tok[i]), tonumber(res[i])
  local inflight, reserved = KEYS[k + 3], KEYS[k + 4]
  -- in-flight entries past their expiry (a crashed instance's) free their slot and reservation
  local expired = redis.call('ZRANGEBYSCORE', inflight, '-inf', now_ms)
  if #expired > 0 then
    local freed = 0
    for _, id in ipairs(expired) do
      local held = redis.call('HGET', reserved, id)
      if held then
        freed = freed + tonumber(held)
        redis.call('HDEL', reserved, id)
      end
    end
    redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now_ms)
    if freed > 0 then redis.call('HINCRBY', reserved, '', -freed) end
  end
  if not dry and redis.call('ZSCORE', inflight, request_id) then return {'duplicate'} end
  local s = {in_flight = redis.call('ZCARD', inflight)}
  if rpm >= 0 then
    s.requests = load_window(KEYS[k + 1], sec)
    if s.requests.total >= rpm then
      failures[#failures + 1] = {i, 'requests', ms(until_at_most(s.requests, now, rpm - 1))}
    end
  end
  if tpm >= 0 then
    s.tokens = load_window(KEYS[k + 2], sec)
    local used = s.tokens.total
    if used >= tpm or used + tokens > tpm then
      local wait = nil
      if tokens <= tpm then wait = until_at_most(s.tokens, now, math.min(tpm - tokens, tpm - 1)) end
      failures[#failures + 1] = {i, 'tokens', ms(wait)}
    end
  end
  if maxc >= 0 and s.in_flight >= maxc then failures[#failures + 1] = {i, 'concurrency', -1} end
  if limit >= 0 then
    s.spend = tonumber(redis.call('GET', KEYS[k + 5]))
    s.reserved = tonumber(redis.call('HGET', reserved, '') or '0')
    local held = s.spend + s.reserved
    if held >= limit or held + reserve > limit then failures[#failures + 1] = {i, 'budget', -1} end
  end
  scopes[i] = s
end

local function rows()
  local out = {}
  for i = 1, n do
    local a = 5 + (i - 1) * 7
    local s = scopes[i]
    local row = {0, 0, 0, 0, s.in_flight, 0, 0}
    if s.requests then
      local reset = oldest_leaves(s.requests, now)
      if s.requests.total >= tonumber(ARGV[a + 1]) then
        reset = math.max(reset, until_at_most(s.requests, now, tonumber(ARGV[a + 1]) - 1) or 0)
      end
      row[1], row[2] = s.requests.total, ms(reset)
    end
    if s.tokens then row[3], row[4] = s.tokens.total, ms(oldest_leaves(s.tokens, now)) end
    if s.spend then row[6], row[7] = s.spend, s.reserved end
    out[i] = row
  end
  return out
end

if dry then return {'state', rows()} end
if #failures > 0 then return {'limited', failures, rows()} end

-- 3. Charge every scope.
for i = 1, n do
  local k, a = (i - 1) * 6, 5 + (i - 1) * 7
  local s = scopes[i]
  if s.requests then
    window_add(s.requests, sec, sec_s, '1')
  end
  local tokens = tonumber(tok[i])
  if s.tokens and tokens > 0 then
    window_add(s.tokens, sec, sec_s, tok[i])
  end
  redis.call('ZADD', KEYS[k + 3], expires_ms, request_id)
  s.in_flight = s.in_flight + 1
  local reserve = tonumber(res[i])
  if s.spend and reserve > 0 then
    redis.call('HSET', KEYS[k + 4], request_id, res[i])
    redis.call('HINCRBY', KEYS[k + 4], '', res[i])
    s.reserved = s.reserved + reserve
  end
  -- the in-flight pair outlives its newest entry by 30-60 s, so idle scopes leave nothing behind (refreshed when
  -- short of that; TTLs are relative, as the caller's clock need not be Redis's)
  local keep = tonumber(expires_ms) - now_ms + 60000
  if redis.call('PTTL', KEYS[k + 3]) < keep - 30000 then redis.call('PEXPIRE', KEYS[k + 3], keep) end
  if s.spend and redis.call('PTTL', KEYS[k + 4]) < keep - 30000 then redis.call('PEXPIRE', KEYS[k + 4], keep) end
end
return {'ok', rows()}
"""

SETTLE = r"""
-- Any number of settlements (those finishing in one event-loop iteration go in one call).
-- KEYS, four per charge, settlement after settlement: tpm window, in-flight ZSET, reserved HASH, spend counter
-- ARGV: now (s), then two per settlement: the request id, and its numbers in one argument, space-separated (one
--       argument to encode instead of 3 + 3 per charge): admission second, real tokens, charge count, then three per
--       charge: tpm tracked (1/0), estimated tokens, cost (nano-USD, -1 = no budget)
-- Reply: the number of settlements
local sec = math.floor(tonumber(ARGV[1]))
local k, settled = 0, 0
for a = 2, #ARGV, 2 do
  local request_id, f = ARGV[a], {}
  for x in string.gmatch(ARGV[a + 1], '%S+') do f[#f + 1] = x end
  local admitted, real, n = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
  for i = 1, n do
    local tracked, estimate, cost = f[i * 3 + 1], f[i * 3 + 2], f[i * 3 + 3]
    if redis.call('ZREM', KEYS[k + 2], request_id) == 1 then  -- else it expired and was pruned, reservation and all
      local held = redis.call('HGET', KEYS[k + 3], request_id)
      if held then
        redis.call('HDEL', KEYS[k + 3], request_id)
        redis.call('HINCRBY', KEYS[k + 3], '', -tonumber(held))
      end
    end
    if tracked == '1' then
      local delta = real - tonumber(estimate)
      if delta > 0 then  -- used more than estimated: the extra counts from now
        local head = redis.call('HMGET', KEYS[k + 1], 'o', 'n')
        redis.call('HINCRBY', KEYS[k + 1], sec, delta)
        redis.call('HINCRBY', KEYS[k + 1], 't', delta)
        if not head[1] or sec < tonumber(head[1]) then redis.call('HSET', KEYS[k + 1], 'o', sec) end
        if not head[2] or sec > tonumber(head[2]) then redis.call('HSET', KEYS[k + 1], 'n', sec) end
        redis.call('EXPIRE', KEYS[k + 1], 120)
      elseif delta < 0 and admitted > sec - 60 then  -- used less: give it back to the second it was charged in
        local charged = tonumber(redis.call('HGET', KEYS[k + 1], admitted) or '0')
        local back = math.min(-delta, charged)
        if back > 0 then
          redis.call('HINCRBY', KEYS[k + 1], admitted, -back)
          redis.call('HINCRBY', KEYS[k + 1], 't', -back)
        end
      end
    end
    -- cost goes to the admission period's counter; a missing one (Redis restarted, or evicted) is left missing, to
    -- be initialised from the ledger, which has this request's row
    if tonumber(cost) > 0 and redis.call('EXISTS', KEYS[k + 4]) == 1 then redis.call('INCRBY', KEYS[k + 4], cost) end
    k = k + 4
  end
  settled = settled + 1
end
return settled
"""

#: KEYS: the spend counter. ARGV: nano-USD. Adds only to a counter that exists: a missing one is loaded from the
#: ledger later, which already holds this cost.
ADD_SPEND = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""
