--[[
  schedule_upsert: declare a periodic schedule (create it, or change what changed).

  KEYS[1] schedule  hash   the record: the spec's fields (schedules.ScheduleSpec.to_redis)
                           and the engine's: last_tick, next_ms, since, created_at, paused,
                           fired, skipped, caught_up
  KEYS[2] schedules zset   the queue's schedules by next fire time (ms)
  KEYS[3] events    stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id        the schedule's id (KEYS[1] is base .. 'schedule:' .. id)
  ARGV[5]  next_ms   its first tick after now, computed by the caller from the new spec
  ARGV[6]  ntiming   how many of the pairs below (the first ones) say when it fires
                     (cron, every, tz): a change of those moves `since` to now
  ARGV[7..] field, value pairs: the spec's fields (none of the engine's names)

  Returns 'created', 'updated' or 'unchanged'. An unchanged declaration writes nothing
  (a deploy that declares the same schedules changes nothing). A new one gets last_tick ''
  (none fired) and since = now: its first tick is the first after now. A changed one
  keeps last_tick (the compare-and-set of schedule_fire.lua goes on from it) and gets
  next_ms (the earlier of the stored one and ARGV[5], so a tick due but not yet fired
  keeps its turn); a change of when it fires also sets since = now, so the new timing
  takes effect at its next tick (no catch-up of ticks the old one never had).
  Errors (nothing written): INVALID <what>; CORRUPT <key> <what> (a key of another type).
  Events: schedule_created, schedule_updated (never on unchanged).
]]
local bad = bad_call(3, 6, true)
if bad then return redis.error_reply(bad) end
local record, index, events = KEYS[1], KEYS[2], KEYS[3]
local id, next_ms, ntiming = ARGV[4], ARGV[5], ARGV[6]
if id == '' or record ~= BASE .. 'schedule:' .. id then return redis.error_reply('INVALID id') end
if not is_uint(next_ms) then return redis.error_reply('INVALID next_ms') end
local npairs = (#ARGV - 6) / 2
if npairs < 1 or npairs % 1 ~= 0 then return redis.error_reply('INVALID field, value pairs') end
if not is_uint(ntiming, npairs) then return redis.error_reply('INVALID ntiming') end
local ENGINE = {last_tick = true, next_ms = true, since = true, created_at = true, paused = true,
  fired = true, skipped = true, caught_up = true}
local fields = {}
for i = 7, #ARGV, 2 do
  if ARGV[i] == '' or ENGINE[ARGV[i]] then return redis.error_reply('INVALID field ' .. ARGV[i]) end
  fields[#fields + 1] = ARGV[i]
end
local corrupt = corrupt_queue({record, 'hash', index, 'zset', events, 'stream'}, nil, {})
if corrupt then return redis.error_reply(corrupt) end

local now = now_ms()
local pairs_ = {}
for i = 7, #ARGV do pairs_[#pairs_ + 1] = ARGV[i] end
if redis.call('EXISTS', record) == 0 then
  redis.call('HSET', record, 'last_tick', '', 'next_ms', next_ms, 'since', now, 'created_at', now,
    'paused', '0', unpack(pairs_))
  redis.call('ZADD', index, next_ms, id)
  emit(events, 'event', 'schedule_created', 'schedule', id, 'next_ms', next_ms)
  return 'created'
end
local stored = redis.call('HMGET', record, 'next_ms', 'paused', unpack(fields))
local changed, timing = false, false
for i, field in ipairs(fields) do
  if stored[i + 2] ~= ARGV[6 + 2 * i] then
    changed = true
    if i <= tonumber(ntiming) then timing = true end
  end
end
if not changed then return 'unchanged' end
local old_next = tonumber(stored[1])
local new_next = tonumber(next_ms)
if not timing and old_next and old_next < new_next then new_next = old_next end
redis.call('HSET', record, 'next_ms', int(new_next), unpack(pairs_))
if timing then redis.call('HSET', record, 'since', now) end
if stored[2] ~= '1' then redis.call('ZADD', index, int(new_next), id) end  -- (paused: out of the index)
emit(events, 'event', 'schedule_updated', 'schedule', id, 'next_ms', int(new_next))
return 'updated'
