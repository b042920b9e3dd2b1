--[[
  delete: an operator deletes one task that is not RUNNING: its record, its index entry,
  and its idempotency entries (key: and unique:, where they name it).

  KEYS[1] pending zset   KEYS[2] scheduled zset   KEYS[3] retrying zset
  KEYS[4] failed zset    KEYS[5] done zset        KEYS[6] cancelled zset
  KEYS[7] stats hash     KEYS[8] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id

  Returns the state the task had ('' when its record was too malformed to say; it is
  deleted all the same, as purge would). Every index but running is cleared of the id (an
  entry left from before the index split included).
  Errors (nothing changed): NOT_FOUND <id> (no record, or not a hash); BAD_STATE RUNNING
  (cancel it first: its worker holds it); INVALID <what>; CORRUPT <key> <what> (a key it
  writes of another type, a counter not an integer).
  Events: deleted.
  Notifies: DELETED on the channel finished:<id> (notify_final).
]]
local bad = bad_call(8, 4)
if bad then return redis.error_reply(bad) end
local stats, events = KEYS[7], KEYS[8]
local id = ARGV[4]
local corrupt = corrupt_queue({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'zset',
                                KEYS[5], 'zset', KEYS[6], 'zset', events, 'stream'}, stats, {'deleted'})
if corrupt then return redis.error_reply(corrupt) end
local f = read_task(id, {'waiting'})
if not f then return redis.error_reply('NOT_FOUND ' .. id) end
if f.state == 'RUNNING' then return redis.error_reply('BAD_STATE RUNNING') end
drop_keys(id)
redis.call('DEL', task_key(id))
for i = 1, 6 do redis.call('ZREM', KEYS[i], id) end
redis.call('HINCRBY', stats, 'deleted', 1)
notify_final(id, 'DELETED', f.waiting)
emit(events, 'event', 'deleted', 'task', id, 'state', f.state or '')
return f.state or ''
