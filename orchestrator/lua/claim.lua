--[[
  claim: take up to n PENDING tasks, lowest priority value first, FIFO within a level.

  KEYS[1] pending zset   KEYS[2] running zset   KEYS[3] stats hash
  KEYS[4] events stream  KEYS[5] wake list      KEYS[6] failed zset
  KEYS[7] tokens string  the lease-token counter (written here, and by orch doctor --repair)
  KEYS[8] metrics hash   wait-time buckets (best effort: metrics_records.py)
  KEYS[9] paused string  while it exists (orch pause) the call takes nothing: one GET a call
                         (GET, not EXISTS: a worker's ACL need not grant what enqueue runs)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  worker     the claiming worker's id
  ARGV[5]  n          most tasks to take (the worker's free slots)
  ARGV[6]  lease_ms   lease length; the running score is now + lease_ms

  Each claimed task becomes RUNNING with a fresh lease token and its attempt counted. A
  token is past the counter (so tokens only grow) and at least Redis TIME in microseconds:
  after a failover that lost the counter's last writes, the promoted replica's clock (later
  by at least the failover's detection time) still issues tokens past every one used before,
  so a zombie from before the failover is refused. The counter is SET (it was read anyway).
  Returns a flat list, 9 values per task:
    id, token, name, args, kwargs, attempts, max_retries, timeout_ms, priority
  Every record taken from pending is read and checked (read_task) before the first write:
  a malformed one is moved aside alone (FAILED, MalformedRecord) and one that is not there
  (no record, not a hash) is dropped from pending; neither is returned. A record not
  PENDING is a stale entry: dropped.
  Errors (nothing changed): INVALID <what>; CORRUPT <key> <what> when a key it writes holds
  another type, or a counter (or the token counter) is not an integer.
  Events: claimed, malformed, dropped.
  Notifies: FAILED on the channel finished:<id> of a record it moves aside (notify_final).
  When tasks remain pending it leaves a wake-up token, so the next idle worker starts.
  Metrics (per call): wait:<bucket> per task claimed and wait_ms, the time since it became
  eligible (ready_at, else the later of created_at and run_at).
]]
local bad = bad_call(9, 6)
if bad then return redis.error_reply(bad) end
local pending, running, stats, events, wake, failed, tokens, metrics =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local worker, n, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if worker == '' or not is_uint(ARGV[5]) or n < 1 or not is_uint(ARGV[6]) or lease < 1 then
  return redis.error_reply('INVALID worker, n or lease_ms')
end
-- Queue keys first (corrupt_queue), most through commands this script runs anyway: pending
-- by ZRANGE, tokens by GET, wake by LLEN, running by the first write (one ZADD for the
-- batch); failed only when a record goes there.
local paused, paused_other = call_typed('GET', KEYS[9])
if paused or paused_other then return {} end  -- paused (whatever the key holds): claim nothing, write nothing
local ids, wrong = call_typed('ZRANGE', pending, 0, n - 1)
if wrong then return redis.error_reply('CORRUPT ' .. pending .. ' is not a zset') end
if #ids == 0 then return {} end  -- (before the other checks: an idle poll writes nothing and costs one call)
local corrupt = corrupt_queue({events, 'stream'}, stats, {'started', 'failed', 'malformed'})
if corrupt then return redis.error_reply(corrupt) end
local last_token, wrong_token = call_typed('GET', tokens)
if wrong_token or (last_token and not is_uint(last_token)) then
  return redis.error_reply('CORRUPT ' .. tokens .. ' is not a count')
end
local FIELDS = {'args', 'kwargs', 'attempts', 'max_retries', 'timeout_ms', 'priority', 'key', 'unique_key',
                'ready_at', 'created_at', 'run_at'}

-- Read and check every record first: Redis does not roll back a script that fails midway.
local good, aside, gone = {}, {}, {}
for _, id in ipairs(ids) do
  local rec, why, badf = read_task(id, FIELDS)
  if rec and not why and not is_utf8(id) then why, badf = 'its id is not UTF-8', {} end
  if rec and why and (rec.state == 'PENDING' or badf.state) then
    aside[#aside + 1] = {id, rec, why, badf}
  elseif rec and not why and rec.state == 'PENDING' then
    good[#good + 1] = {id, rec}
  elseif not rec then
    gone[#gone + 1] = {id, why}
  end  -- else a stale entry, its record in another state (a worker may hold it): dropped
end
if #aside > 0 then
  corrupt = corrupt_queue({failed, 'zset'}, stats, {})
  if corrupt then return redis.error_reply(corrupt) end
end
local more = #ids == n and redis.call('ZCARD', pending) > n  -- tasks left: wake another worker
local waiting, wrong_wake = false, false
if more then waiting, wrong_wake = call_typed('LLEN', wake) end
if wrong_wake then return redis.error_reply('CORRUPT ' .. wake .. ' is not a list') end

local clock = redis.call('TIME')  -- (now_ms's, read once: the token floor needs microseconds)
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + OFFSET
local now_s = OFFSET == 0 and clock[1] .. string.sub('00000' .. clock[2], -6, -4) or int(now)  -- (as clock_ms's)
local deadline = now + lease
local token = 0
if #good > 0 then  -- the first write: if running is not a zset, nothing is written
  local leases = {}
  for _, g in ipairs(good) do leases[#leases + 1] = deadline; leases[#leases + 1] = g[1] end
  local _, wrong_running = call_typed('ZADD', running, unpack(leases))
  if wrong_running then return redis.error_reply('CORRUPT ' .. running .. ' is not a zset') end
  -- One token per claimed task, past the counter and from Redis TIME in microseconds up
  -- (exact in a Lua number until 2255; integrity._repair_tokens: the same rule).
  local last = tonumber(last_token or 0)
  if not last_token then
    -- A new counter (a fresh queue, or the counter deleted or moved aside by hand), or a
    -- queue from before the counter had its own key (stats kept the count): past either.
    local old = redis.call('HGET', stats, 'tokens')
    if old and is_uint(old) then last = tonumber(old) end
    if old then redis.call('HDEL', stats, 'tokens') end
  end
  token = math.max(last, tonumber(clock[1]) * 1000000 + tonumber(clock[2]) - 1)
  redis.call('SET', tokens, int(token + #good))
end
redis.call('ZREM', pending, unpack(ids))
local out = {}
local waits, waited = {}, 0  -- metrics field -> count; total wait (ms)
local wait_field = {}  -- bucket -> its metrics field (a number printed once per call, not per task)
for _, g in ipairs(good) do
  local id, f = g[1], g[2]
  local ready = tonumber(f.ready_at) or math.max(tonumber(f.created_at) or now, tonumber(f.run_at) or 0)
  local wait = math.max(now - ready, 0)
  local le = bucket_of(WAIT_BUCKETS, wait)
  local field = wait_field[le]
  if not field then field = 'wait:' .. le; wait_field[le] = field end
  tally(waits, field, 1)
  waited = waited + wait
  token = token + 1
  local token_s = int(token)
  local attempts = tonumber(f.attempts) + 1
  redis.call('HSET', task_key(id), 'state', 'RUNNING', 'worker', worker, 'token', token_s,
             'attempts', attempts, 'started_at', now_s)
  emit(events, 'event', 'claimed', 'task', id, 'name', f.name, 'priority', f.priority,
       'worker', worker, 'attempt', attempts)
  local k = #out  -- the row: id, token, name, args, kwargs, attempts, max_retries, timeout_ms, priority
  out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5] = id, token_s, f.name, f.args, f.kwargs
  out[k + 6], out[k + 7], out[k + 8], out[k + 9] = attempts, f.max_retries, f.timeout_ms, f.priority
end
for _, a in ipairs(aside) do
  quarantine(a[1], a[2], a[3], a[4], now, failed, stats, events)
end
for _, g in ipairs(gone) do
  dropped(events, g[1], g[2])
end
if #good > 0 then
  redis.call('HINCRBY', stats, 'started', #good)
  waits.wait_ms = waited
  add_counts(metrics, waits)
end
if more and waiting == 0 then
  redis.call('RPUSH', wake, '1')  -- (wake_one, with its LLEN made above)
end
return out
