--[[
  pause: pause or resume a queue. While the paused key exists, claim takes nothing from
  the queue (every worker obeys at once); enqueue goes on and running tasks finish.

  KEYS[1] paused string  exists while paused; holds the time it was paused (ms)
  KEYS[2] events stream  KEYS[3] wake list
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  on   1 pauses, 0 resumes

  Returns 1 when the call changed the queue, 0 when it already was so (nothing written).
  Resuming leaves a wake-up token, so an idle worker claims the waiting tasks at once.
  Errors (nothing changed): INVALID <what>; CORRUPT <key> <what> (the events stream or
  the wake list of another type).
  Events: paused or resumed (on a change only).
]]
local bad = bad_call(3, 4)
if bad then return redis.error_reply(bad) end
local paused, events, wake = KEYS[1], KEYS[2], KEYS[3]
local on = ARGV[4]
if on ~= '1' and on ~= '0' then return redis.error_reply('INVALID on') end
local corrupt = corrupt_queue({events, 'stream', wake, 'list'}, nil, {})
if corrupt then return redis.error_reply(corrupt) end
local was = redis.call('EXISTS', paused) == 1
if (on == '1') == was then return 0 end
if on == '1' then
  redis.call('SET', paused, now_ms())
  emit(events, 'event', 'paused')
else
  redis.call('DEL', paused)
  wake_one(wake)
  emit(events, 'event', 'resumed')
end
return 1
