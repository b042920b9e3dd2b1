--[[
  reap: RUNNING tasks whose lease deadline passed (their worker died, froze or lost
  Redis) count the attempt and are retried or failed; workers whose heartbeat
  deadline passed are deregistered.

  KEYS[1] running zset   KEYS[2] scheduled zset   KEYS[3] failed zset
  KEYS[4] stats hash     KEYS[5] events stream    KEYS[6] workers zset
  KEYS[7] done zset
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit   most tasks (and most workers) handled by this call
  ARGV[5]  seed    integer seeding the backoff jitter
  ARGV[6]  ttl_ms  retention of a record cancelled here; 0 keeps it

  A task with a pending cancel request is not retried: it ends CANCELLED.

  Returns {tasks, workers, more}:
    tasks    flat list: id, worker that held it, new state (RETRYING, FAILED or CANCELLED)
    workers  flat list: worker id, last heartbeat (ms) of each worker found dead
    more     1 when more expired leases are already waiting
  Cost: proportional to the expired entries, not to the size of the queue.
  Errors: INVALID <what>. Events: reaped, worker_lost.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local running, scheduled, failed, stats, events, workers, done =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
if not is_uint(ARGV[4]) or tonumber(ARGV[4]) < 1 or not is_uint(ARGV[5]) or not is_uint(ARGV[6]) then
  return redis.error_reply('INVALID limit, seed or ttl_ms')
end
local limit = tonumber(ARGV[4])
math.randomseed(tonumber(ARGV[5]))
local now = now_ms()

local expired = redis.call('ZRANGE', running, '-inf', now - 1, 'BYSCORE', 'LIMIT', 0, limit + 1)
local tasks = {}
for i = 1, math.min(#expired, limit) do
  local id = expired[i]
  redis.call('ZREM', running, id)
  local f = redis.call('HMGET', task_key(id), 'state', 'worker', 'attempts', 'name', 'cancel_requested', 'key')
  if f[1] == 'RUNNING' then
    local holder = f[2] or ''
    local err = cjson.encode({type = 'LeaseExpired', traceback = '',
      message = 'lease expired: worker ' .. holder .. ' stopped renewing it (attempt ' .. (f[3] or '?') .. ')'})
    local state = 'CANCELLED'
    if f[5] == '1' then
      finish_cancelled(id, now, err, f[6], done, stats, tonumber(ARGV[6]))
    else
      state = settle_failure(id, now, err, true, scheduled, failed, stats)
    end
    redis.call('HINCRBY', stats, 'reaped', 1)
    emit(events, 'event', 'reaped', 'task', id, 'name', f[4], 'worker', holder,
         'attempt', f[3], 'state', state)
    tasks[#tasks + 1] = id
    tasks[#tasks + 1] = holder
    tasks[#tasks + 1] = state
  end
end

local dead = redis.call('ZRANGE', workers, '-inf', now - 1, 'BYSCORE', 'LIMIT', 0, limit)
local lost = {}
for _, wid in ipairs(dead) do
  local whash = BASE .. 'worker:' .. wid
  local last = redis.call('HGET', whash, 'last_seen') or ''
  redis.call('ZREM', workers, wid)
  redis.call('DEL', whash)
  emit(events, 'event', 'worker_lost', 'worker', wid, 'last_seen', last)
  lost[#lost + 1] = wid
  lost[#lost + 1] = last
end
return {tasks, lost, #expired > limit and 1 or 0}
