--[[
  schedule_remove: delete a periodic schedule; it never fires again (its tasks stay).

  KEYS[1] schedule  hash   KEYS[2] schedules zset   KEYS[3] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id   the schedule's id (KEYS[1] is base .. 'schedule:' .. id)

  Returns 1 when it was removed, 0 when there was none (nothing written).
  A scheduler that read it before firing finds it gone (schedule_fire.lua answers 'gone').
  Errors (nothing written): INVALID <what>; CORRUPT <key> <what>.
  Events: schedule_removed.
]]
local bad = bad_call(3, 4)
if bad then return redis.error_reply(bad) end
local record, index, events, id = KEYS[1], KEYS[2], KEYS[3], ARGV[4]
if id == '' or record ~= BASE .. 'schedule:' .. id then return redis.error_reply('INVALID id') end
local corrupt = corrupt_queue({index, 'zset', events, 'stream'}, nil, {})
if corrupt then return redis.error_reply(corrupt) end
local removed = redis.call('DEL', record) + redis.call('ZREM', index, id)
if removed == 0 then return 0 end
emit(events, 'event', 'schedule_removed', 'schedule', id)
return 1
