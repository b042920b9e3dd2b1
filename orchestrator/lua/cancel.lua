--[[
  cancel: stop a task. PENDING, SCHEDULED and RETRYING tasks become CANCELLED at once;
  a RUNNING task gets a cancel request that its worker sees at its next heartbeat.

  KEYS[1] pending zset   KEYS[2] scheduled zset   KEYS[3] done zset
  KEYS[4] stats hash     KEYS[5] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id       ARGV[5]  ttl_ms   retention of the cancelled record; 0 keeps it

  Returns the state after the call: CANCELLED, or RUNNING (cancel requested).
  Errors (nothing changed): NOT_FOUND <id>; BAD_STATE <state> for SUCCESS, FAILED or
  CANCELLED tasks; INVALID <what>. Events: cancelled or cancel_requested.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local pending, scheduled, done, stats, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[4]
if not is_uint(ARGV[5]) then return redis.error_reply('INVALID ttl_ms') end
local tkey = task_key(id)
local f = redis.call('HMGET', tkey, 'state', 'key')
local state = f[1]
if not state then return redis.error_reply('NOT_FOUND ' .. id) end
if state == 'RUNNING' then
  redis.call('HSET', tkey, 'cancel_requested', 1)
  emit(events, 'event', 'cancel_requested', 'task', id)
  return 'RUNNING'
end
if state ~= 'PENDING' and state ~= 'SCHEDULED' and state ~= 'RETRYING' then
  return redis.error_reply('BAD_STATE ' .. state)
end
local now = now_ms()
redis.call('ZREM', pending, id)
redis.call('ZREM', scheduled, id)
redis.call('HSET', tkey, 'state', 'CANCELLED', 'completed_at', now)
redis.call('HINCRBY', stats, 'cancelled', 1)
release_unique(id, f[2])
retire(done, id, now, tonumber(ARGV[5]))
emit(events, 'event', 'cancelled', 'task', id, 'from', state)
return 'CANCELLED'
