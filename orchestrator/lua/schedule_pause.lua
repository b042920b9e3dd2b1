--[[
  schedule_pause: pause or resume one periodic schedule (the operator's switch, apart from
  the spec's `enabled`, so a deploy that declares it again does not resume it).

  KEYS[1] schedule  hash   KEYS[2] schedules zset   KEYS[3] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id   the schedule's id (KEYS[1] is base .. 'schedule:' .. id)
  ARGV[5]  on   1 pauses, 0 resumes

  Returns 1 when the call changed it, 0 when it already was so, -1 when there is no such
  schedule (nothing written either way).
  While paused it is out of the index (no scheduler reads it) and schedule_fire.lua fires
  nothing; resuming puts it back due now (the scheduler works out its next tick) and sets
  since = now, so the ticks of the pause are not caught up.
  Errors (nothing written): INVALID <what>;
  CORRUPT <key> <what>.
  Events: schedule_paused or schedule_resumed (on a change only).
]]
local bad = bad_call(3, 5)
if bad then return redis.error_reply(bad) end
local record, index, events, id, on = KEYS[1], KEYS[2], KEYS[3], ARGV[4], ARGV[5]
if id == '' or record ~= BASE .. 'schedule:' .. id then return redis.error_reply('INVALID id') end
if on ~= '1' and on ~= '0' then return redis.error_reply('INVALID on') end
local corrupt = corrupt_queue({record, 'hash', index, 'zset', events, 'stream'}, nil, {})
if corrupt then return redis.error_reply(corrupt) end
local f = redis.call('HMGET', record, 'last_tick', 'paused')
if not f[1] then return -1 end
if (f[2] == '1') == (on == '1') then return 0 end
if on == '1' then
  redis.call('HSET', record, 'paused', '1')
  redis.call('ZREM', index, id)
  emit(events, 'event', 'schedule_paused', 'schedule', id)
else
  local now = now_ms()
  redis.call('HSET', record, 'paused', '0', 'since', now)
  redis.call('ZADD', index, now, id)
  emit(events, 'event', 'schedule_resumed', 'schedule', id)
end
return 1
