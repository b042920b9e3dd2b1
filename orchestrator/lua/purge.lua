--[[
  purge: delete up to `limit` tasks of one index (pending, scheduled, failed or done)
  with their records and idempotency keys. Callers loop until it returns 0.

  KEYS[1] the index zset   KEYS[2] stats hash   KEYS[3] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit

  Returns how many entries were removed. Running tasks are never purged (their
  index is not accepted by the client). Errors: INVALID <what>. Events: purged.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local index, stats, events = KEYS[1], KEYS[2], KEYS[3]
if not is_uint(ARGV[4]) or tonumber(ARGV[4]) < 1 then return redis.error_reply('INVALID limit') end
local popped = redis.call('ZPOPMIN', index, tonumber(ARGV[4]))
local n = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local tkey = task_key(id)
  local f = redis.call('HMGET', tkey, 'state', 'key')
  if f[1] ~= 'RUNNING' then
    release_unique(id, f[2])
    redis.call('DEL', tkey)
  end
  n = n + 1
end
if n > 0 then
  redis.call('HINCRBY', stats, 'purged', n)
  emit(events, 'event', 'purged', 'count', n)
end
return n
