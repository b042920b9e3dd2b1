--[[
  reap: RUNNING tasks whose lease deadline passed (their worker died, froze or lost
  Redis) count the attempt and are retried or failed; workers whose heartbeat
  deadline passed are deregistered.

  KEYS[1] running zset   KEYS[2] retrying zset    KEYS[3] failed zset
  KEYS[4] stats hash     KEYS[5] events stream    KEYS[6] workers zset
  KEYS[7] cancelled zset KEYS[8] metrics hash (best effort)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit   most tasks (and most workers) handled by this call
  ARGV[5]  seed    integer seeding the backoff jitter
  ARGV[6]  ttl_ms  retention of a record cancelled here; 0 keeps it

  A task with a pending cancel request is not retried: it ends CANCELLED. A malformed
  record is moved aside (FAILED, MalformedRecord; reported with that state); an id whose
  record is gone or not a hash is dropped from running (not reported). A dead worker's
  key is deleted whatever its type (one not a hash reports no last heartbeat). A reaped attempt
  retried or cancelled joins its record's history (error 'lease expired').

  Returns {tasks, workers, more}:
    tasks    flat list: id, worker that held it, new state (RETRYING, FAILED or CANCELLED)
    workers  flat list: worker id, last heartbeat (ms) of each worker found dead
    more     1 when more expired leases are already waiting
  Cost: proportional to the expired entries, not to the size of the queue.
  Errors (nothing changed): INVALID <what>; CORRUPT <key> <what> (a key it writes of
  another type, a counter not an integer). Events: reaped, worker_lost, malformed, dropped.
  Notifies: FAILED or CANCELLED on the channel finished:<id> of each task that ends (notify_final).
  Metrics (per call): reaped, and retried:<label>, failed:<label> or cancelled:<label> per
  task (no run time: nobody timed the attempt); the minute's series snapshot when it is the
  minute's first.
]]
local bad = bad_call(8, 6)
if bad then return redis.error_reply(bad) end
local running, retrying, failed, stats, events, workers, cancelled, metrics =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
if not is_uint(ARGV[4]) or tonumber(ARGV[4]) < 1 or not is_uint(ARGV[5]) or not is_uint(ARGV[6]) then
  return redis.error_reply('INVALID limit, seed or ttl_ms')
end
local corrupt, seen = corrupt_queue({running, 'zset', retrying, 'zset', failed, 'zset', events, 'stream', workers,
                                      'zset', cancelled, 'zset'}, stats, {'retried', 'failed', 'reaped', 'cancelled', 'malformed'},
                                      'series_minute')
if corrupt then return redis.error_reply(corrupt) end
local limit = tonumber(ARGV[4])
math.randomseed(tonumber(ARGV[5]))
local now = now_ms()

local expired = redis.call('ZRANGE', running, '-inf', now - 1, 'BYSCORE', 'LIMIT', 0, limit + 1)
-- Dead workers' last heartbeats are read before the first write: a worker key of another
-- type (hand-written) reads as '' and is deleted below, whatever its type.
local dead = redis.call('ZRANGE', workers, '-inf', now - 1, 'BYSCORE', 'LIMIT', 0, limit)
local last_seen = {}
for i, wid in ipairs(dead) do
  local last = call_typed('HGET', BASE .. 'worker:' .. wid, 'last_seen')
  last_seen[i] = type(last) == 'string' and last or ''
end
local tasks = {}
local counts, snapped = {}, false  -- metrics written once for the call
for i = 1, math.min(#expired, limit) do
  local id = expired[i]
  -- (settle_failure is given attempts, max_retries, backoff_ms, backoff_max_ms, jitter and unique_key.)
  local f, why, badf = read_task(id, {'waiting', 'worker', 'attempts', 'cancel_requested', 'key', 'token', 'started_at', 'history',
                                      'max_retries', 'backoff_ms', 'backoff_max_ms', 'jitter', 'unique_key', 'label'})
  redis.call('ZREM', running, id)
  if not snapped then snapshot_series(stats, now, seen); snapped = true end  -- (after the first write)
  local state = nil
  if not f then
    dropped(events, id, why)
  elseif why and (f.state == 'RUNNING' or badf.state) then
    quarantine(id, f, why, badf, now, failed, stats, events)
    state = 'FAILED'
  elseif not why and f.state == 'RUNNING' then
    local err = cjson.encode({type = 'LeaseExpired', traceback = '',
      message = 'lease expired: worker ' .. f.worker .. ' stopped renewing it (attempt ' .. f.attempts .. ')'})
    state = 'CANCELLED'
    if f.cancel_requested == '1' then
      finish_cancelled(id, now, err, cancelled, stats, tonumber(ARGV[6]), f, 'lease expired')
    else
      state = settle_failure(id, f, now, err, true, retrying, failed, stats, 'lease expired')
    end
    redis.call('HINCRBY', stats, 'reaped', 1)
    tally_outcome(counts, f, state, now, false)
    tally(counts, 'reaped', 1)
    emit(events, 'event', 'reaped', 'task', id, 'name', f.name, 'worker', f.worker,
         'attempt', f.attempts, 'state', state)
  end
  if state then
    tasks[#tasks + 1] = id
    tasks[#tasks + 1] = f.worker
    tasks[#tasks + 1] = state
  end
end

add_counts(metrics, counts)

local lost = {}
for i, wid in ipairs(dead) do
  local last = last_seen[i]
  redis.call('ZREM', workers, wid)
  redis.call('DEL', BASE .. 'worker:' .. wid)
  emit(events, 'event', 'worker_lost', 'worker', wid, 'last_seen', last)
  lost[#lost + 1] = wid
  lost[#lost + 1] = last
end
return {tasks, lost, #expired > limit and 1 or 0}
