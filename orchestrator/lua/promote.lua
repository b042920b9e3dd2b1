--[[
  promote: move due SCHEDULED and RETRYING tasks to PENDING, at most `limit` per call.

  KEYS[1] scheduled zset   KEYS[2] pending zset   KEYS[3] stats hash
  KEYS[4] events stream    KEYS[5] wake list      KEYS[6] failed zset
  KEYS[7] retrying zset
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit   most tasks moved by this call

  Returns {moved, more}: how many were promoted, and 1 when more are already due.
  Due tasks of both indexes are taken earliest run-at first (a RETRYING task written
  before the split may still sit in scheduled: it is promoted from there alike).
  A promoted task goes to the back of its priority level, ready_at = its run-at (the index
  score, at most now): the wait metrics count from when it fell due, a late promotion included.
  Cost: O(limit log n).
  A malformed record is moved aside (FAILED, MalformedRecord); an id whose record is gone
  or not a hash is dropped from scheduled.
  Errors (nothing changed): INVALID <what>; CORRUPT <key> <what> (a key it writes of
  another type, a counter not an integer). Events: promoted, malformed, dropped.
  Notifies: FAILED on the channel finished:<id> of a record it moves aside (notify_final).
]]
local bad = bad_call(7, 4)
if bad then return redis.error_reply(bad) end
local scheduled, pending, stats, events, wake, failed, retrying =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
if not is_uint(ARGV[4]) or tonumber(ARGV[4]) < 1 then return redis.error_reply('INVALID limit') end
local corrupt = corrupt_queue({scheduled, 'zset', pending, 'zset', events, 'stream', wake, 'list',
                                failed, 'zset', retrying, 'zset'}, stats, {'seq', 'promoted', 'failed', 'malformed'})
if corrupt then return redis.error_reply(corrupt) end
local limit = tonumber(ARGV[4])
local now = now_ms()
local due = {}  -- {id, run_at, index}, of both indexes, earliest first
for _, index in ipairs({scheduled, retrying}) do
  local found = redis.call('ZRANGE', index, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit + 1, 'WITHSCORES')
  for i = 1, #found, 2 do due[#due + 1] = {found[i], tonumber(found[i + 1]), index} end
end
table.sort(due, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
local moved = 0
for i = 1, math.min(#due, limit) do
  local id = due[i][1]
  local tkey = task_key(id)
  local f, why, badf = read_task(id, {'priority', 'key'})
  redis.call('ZREM', due[i][3], id)
  if not f then
    dropped(events, id, why)
  elseif why and (f.state == 'SCHEDULED' or f.state == 'RETRYING' or badf.state) then
    quarantine(id, f, why, badf, now, failed, stats, events)
  elseif not why and (f.state == 'SCHEDULED' or f.state == 'RETRYING') then
    local score = int(pending_score(stats, tonumber(f.priority)))
    -- Eligible since it fell due (its run-at, the index score): waiting for a scheduler is wait too.
    local ready = int(math.max(math.min(due[i][2], now), 0))
    redis.call('HSET', tkey, 'state', 'PENDING', 'score', score, 'ready_at', ready)
    redis.call('ZADD', pending, score, id)
    emit(events, 'event', 'promoted', 'task', id, 'from', f.state)
    moved = moved + 1
  end
end
made_ready(stats, 'promoted', moved, wake)
return {moved, #due > limit and 1 or 0}
