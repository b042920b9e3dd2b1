--[[
  schedule_set_aside: move a schedule whose record does not read out of the due range, alone.

  A record spoiled by hand (bad JSON, a missing field, a key of another type, a counter
  that is not an integer) cannot be fired; left due, it would come back on every pass and
  could fill a pass's batch, so healthy schedules behind it would not fire. This pushes
  its index score to `until`: it is looked at again then (fixed by hand or declared again
  in the meantime, it fires as before). The record itself is not read nor written.

  KEYS[1] schedule  any type (not touched; names the schedule and its hash tag)
  KEYS[2] schedules zset   KEYS[3] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id      the schedule's id (KEYS[1] is base .. 'schedule:' .. id)
  ARGV[5]  until   Unix ms: the score it gets in the index
  ARGV[6]  why     what did not read (text, at most 500 bytes; shown in the event)

  Returns 1 when it was set aside; 0 when it is not due any more (in no index, or its score
  is after now: fired, declared again, paused or removed since the caller read it), with
  nothing written.
  Errors (nothing written): INVALID <what>; CORRUPT <key> <what> (a key of another type).
  Events: schedule_set_aside (schedule, until, why).
]]
local bad = bad_call(3, 6)
if bad then return redis.error_reply(bad) end
local record, index, events = KEYS[1], KEYS[2], KEYS[3]
local id, until_ms, why = ARGV[4], ARGV[5], ARGV[6]
if id == '' or record ~= BASE .. 'schedule:' .. id then return redis.error_reply('INVALID id') end
if not is_uint(until_ms) then return redis.error_reply('INVALID until') end
if why == '' or #why > 500 then return redis.error_reply('INVALID why') end
local corrupt = corrupt_queue({index, 'zset', events, 'stream'}, nil, {})
if corrupt then return redis.error_reply(corrupt) end
local score = redis.call('ZSCORE', index, id)
if not score or tonumber(score) > now_ms() then return 0 end
redis.call('ZADD', index, until_ms, id)
emit(events, 'event', 'schedule_set_aside', 'schedule', id, 'until', until_ms, 'why', why)
return 1
