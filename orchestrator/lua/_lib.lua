--[[
  Shared helpers, prepended to every script by transitions.py (so each script is
  still one self-contained EVALSHA). Defines nothing that touches a key by name:
  per-task keys are built from BASE = ARGV[1], the queue's key prefix ("orch:{Q}:").

  Every script receives the same first three arguments:
    ARGV[1]  base         queue key prefix, e.g. "orch:{default}:"
    ARGV[2]  offset_ms    added to Redis TIME; 0 in production, tests may shift the clock
    ARGV[3]  maxlen       approximate cap of the event stream; 0 writes no events
]]
local MAX_INT = 9007199254740991  -- 2^53 - 1: larger numbers are not exact in Lua or in Redis

-- Canonical decimal integers only ('-12', '0', '42'): tonumber() also takes '1e1', '0x10',
-- ' 10', '10.0' and '010', which a script would then store raw. A Lua number passes when whole.
local function is_int(s)
  local n = tonumber(s)
  if n == nil or n ~= n or n < -MAX_INT or n > MAX_INT then return false end  -- nil, nan, too big
  if type(s) == 'number' then return n % 1 == 0 end
  return s == '0' or string.find(s, '^%-?[1-9]%d*$') ~= nil
end

local BASE = ARGV[1]
local OFFSET = tonumber(ARGV[2]) or 0
local MAXLEN = tonumber(ARGV[3]) or 0

-- Every script calls this first: the common arguments, checked before anything is written.
local function common_args_ok()
  return BASE ~= nil and BASE ~= '' and is_int(ARGV[2]) and is_int(ARGV[3]) and tonumber(ARGV[3]) >= 0
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + OFFSET
end

local function task_key(id)
  return BASE .. 'task:' .. id
end

-- Integers as exact decimal strings (tostring() would print 1e+13 for big ones).
local function int(n)
  return string.format('%.0f', n)
end

local function emit(events_key, ...)
  if MAXLEN > 0 then
    redis.call('XADD', events_key, 'MAXLEN', '~', MAXLEN, '*', ...)
  end
end

-- Order in the pending set: priority first, then enqueue sequence (FIFO).
local PRIORITY_SPAN = 10000000000000  -- 1e13 sequence numbers per priority level
local function pending_score(stats_key, priority)
  local seq = redis.call('HINCRBY', stats_key, 'seq', 1)
  return priority * PRIORITY_SPAN + seq
end

-- (enqueue checks 6 numbers per task with it: one tonumber and one string.find, no calls)
local function is_uint(s, max)
  return is_int(s) and tonumber(s) >= 0 and tonumber(s) <= (max or MAX_INT)
end

-- Drop the idempotency key of a task that reached a final state, if it still points at it.
local function release_unique(id, key)
  if key and key ~= '' then
    local ukey = BASE .. 'unique:' .. key
    if redis.call('GET', ukey) == id then
      redis.call('DEL', ukey)
    end
  end
end

-- Keep a finished record for ttl_ms, and trim the done index of what has expired:
-- on about one call in 16 (by the clock's last bits), at most 64 entries, so the
-- cost stays bounded and small while trimming outpaces the finishing.
local function retire(done_key, id, now, ttl_ms)
  redis.call('ZADD', done_key, now, id)
  if ttl_ms > 0 then
    redis.call('PEXPIRE', task_key(id), ttl_ms)
    local old = {}
    if now % 16 == 0 then
      old = redis.call('ZRANGE', done_key, '-inf', now - ttl_ms, 'BYSCORE', 'LIMIT', 0, 64)
    end
    if #old > 0 then
      redis.call('ZREM', done_key, unpack(old))
    end
  end
end

-- An attempt of a RUNNING task ended in error (a raised exception, a timeout or an
-- expired lease). Retry with exponential backoff and jitter while attempts remain,
-- else move it to the dead-letter set. Returns the new state and its run_at (or '').
local function settle_failure(id, now, err, allow_retry, scheduled_key, failed_key, stats_key)
  local tkey = task_key(id)
  local f = redis.call('HMGET', tkey, 'attempts', 'max_retries', 'backoff_ms', 'backoff_max_ms', 'jitter', 'key')
  local attempts = tonumber(f[1]) or 0
  local max_retries = tonumber(f[2]) or 0
  if allow_retry and attempts <= max_retries then
    local delay = (tonumber(f[3]) or 0) * 2 ^ (attempts - 1)
    local cap = tonumber(f[4]) or 0
    if delay > cap then delay = cap end
    if f[5] == '1' then delay = delay * (0.5 + math.random() * 0.5) end
    local run_at = now + math.floor(delay)
    redis.call('HSET', tkey, 'state', 'RETRYING', 'error', err, 'run_at', run_at, 'worker', '')
    redis.call('ZADD', scheduled_key, run_at, id)
    redis.call('HINCRBY', stats_key, 'retried', 1)
    return 'RETRYING', run_at
  end
  redis.call('HSET', tkey, 'state', 'FAILED', 'error', err, 'completed_at', now, 'worker', '')
  redis.call('ZADD', failed_key, now, id)
  redis.call('HINCRBY', stats_key, 'failed', 1)
  release_unique(id, f[6])
  return 'FAILED', ''
end

-- End a RUNNING task as CANCELLED (its cancel request was honoured): into done, kept ttl_ms.
local function finish_cancelled(id, now, err, key, done_key, stats_key, ttl_ms)
  redis.call('HSET', task_key(id), 'state', 'CANCELLED', 'error', err, 'completed_at', now, 'worker', '')
  redis.call('HINCRBY', stats_key, 'cancelled', 1)
  release_unique(id, key)
  retire(done_key, id, now, ttl_ms)
end

-- Runtime bookkeeping of one finished attempt.
local function count_run(stats_key, started_at, now)
  local started = tonumber(started_at)
  if started then
    redis.call('HINCRBY', stats_key, 'runs', 1)
    redis.call('HINCRBY', stats_key, 'runtime_ms', now - started)
  end
end

local function wake_one(wake_key)
  if redis.call('LLEN', wake_key) == 0 then
    redis.call('RPUSH', wake_key, '1')
  end
end

-- n tasks became PENDING: count them under `counter` and wake an idle worker.
local function made_ready(stats_key, counter, n, wake_key)
  if n > 0 then
    redis.call('HINCRBY', stats_key, counter, n)
    wake_one(wake_key)
  end
end
