--[[
  complete: a RUNNING task succeeded; only the holder of the current lease may say so.

  KEYS[1] running zset   KEYS[2] done zset   KEYS[3] stats hash   KEYS[4] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id          ARGV[5]  token     the lease token from claim
  ARGV[6]  result      JSON               ARGV[7]  ttl_ms   record retention; 0 keeps it

  Returns the completion time (ms). The record becomes SUCCESS, leaves running, enters
  done, and expires after ttl_ms; its idempotency key is released.
  Errors (nothing changed): NOT_FOUND <id>; LEASE_LOST <id> when the task is not RUNNING
  under this token (reaped, released, cancelled or claimed again); INVALID <what>.
  Events: succeeded.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local running, done, stats, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, token, result = ARGV[4], ARGV[5], ARGV[6]
if not is_uint(ARGV[7]) then return redis.error_reply('INVALID ttl_ms') end
local tkey = task_key(id)
local f = redis.call('HMGET', tkey, 'state', 'token', 'started_at', 'worker', 'key', 'name')
if not f[1] then return redis.error_reply('NOT_FOUND ' .. id) end
if f[1] ~= 'RUNNING' or f[2] ~= token then return redis.error_reply('LEASE_LOST ' .. id) end

local now = now_ms()
-- ZREM first: Redis refuses a memory-growing command at maxmemory only while a script has
-- written nothing yet, so a completion (which frees a lease) still lands on a full Redis.
redis.call('ZREM', running, id)
redis.call('HSET', tkey, 'state', 'SUCCESS', 'result', result, 'completed_at', now)
redis.call('HINCRBY', stats, 'succeeded', 1)
count_run(stats, f[3], now)
release_unique(id, f[5])
retire(done, id, now, tonumber(ARGV[7]))
emit(events, 'event', 'succeeded', 'task', id, 'name', f[6], 'worker', f[4],
     'runtime_ms', now - (tonumber(f[3]) or now))
return now
