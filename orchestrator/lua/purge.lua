--[[
  purge: delete up to `limit` tasks of one index (pending, scheduled, retrying, failed, done
  or cancelled)
  with their records and idempotency keys. Callers loop until it returns 0.

  KEYS[1] the index zset   KEYS[2] stats hash   KEYS[3] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit

  Returns how many entries were removed. Running tasks are never purged (their
  index is not accepted by the client). A malformed record is purged like any other; a
  task key that is not a hash is deleted with its entry.
  Errors (nothing changed): INVALID <what>; CORRUPT <key> <what> (a key it writes of
  another type, a counter not an integer). Events: purged.
]]
local bad = bad_call(3, 4)
if bad then return redis.error_reply(bad) end
local index, stats, events = KEYS[1], KEYS[2], KEYS[3]
if not is_uint(ARGV[4]) or tonumber(ARGV[4]) < 1 then return redis.error_reply('INVALID limit') end
local corrupt = corrupt_queue({index, 'zset', events, 'stream'}, stats, {'purged'})
if corrupt then return redis.error_reply(corrupt) end
local popped = redis.call('ZPOPMIN', index, tonumber(ARGV[4]))
local n = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local tkey = task_key(id)
  local f, why, badf = read_task(id, {'key'})
  if not f or f.state ~= 'RUNNING' then
    if f then drop_keys(id) end
    redis.call('DEL', tkey)
  end
  n = n + 1
end
if n > 0 then
  redis.call('HINCRBY', stats, 'purged', n)
  emit(events, 'event', 'purged', 'count', n)
end
return n
