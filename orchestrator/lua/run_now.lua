--[[
  run_now: an operator runs a SCHEDULED or RETRYING task now: it becomes PENDING at
  once, at the back of its priority level, with ready_at = now (its run_at is kept).

  KEYS[1] scheduled zset   KEYS[2] retrying zset   KEYS[3] pending zset
  KEYS[4] stats hash       KEYS[5] events stream   KEYS[6] wake list
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id

  Returns the state it left: SCHEDULED or RETRYING. An idle worker is woken.
  Errors (nothing changed): NOT_FOUND <id> (no record, or not a hash); BAD_STATE <state>
  for any other state; MALFORMED <id> <why> when the record is malformed (promote moves
  it aside when it is due); INVALID <what>; CORRUPT <key> <what> (a key it writes of
  another type, a counter not an integer).
  Events: promoted (from, by = run_now).
]]
local bad = bad_call(6, 4)
if bad then return redis.error_reply(bad) end
local scheduled, retrying, pending, stats, events, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id = ARGV[4]
local corrupt = corrupt_queue({scheduled, 'zset', retrying, 'zset', pending, 'zset', events, 'stream',
                                wake, 'list'}, stats, {'seq', 'promoted'})
if corrupt then return redis.error_reply(corrupt) end
local f, why = read_task(id, {'priority'})
if not f then return redis.error_reply('NOT_FOUND ' .. id) end
if f.state and f.state ~= 'SCHEDULED' and f.state ~= 'RETRYING' then
  return redis.error_reply('BAD_STATE ' .. f.state)
end
if why then return redis.error_reply('MALFORMED ' .. id .. ' ' .. why) end
local now = now_ms()
redis.call('ZREM', scheduled, id)
redis.call('ZREM', retrying, id)  -- (a RETRYING task written before the split sits in scheduled)
local score = int(pending_score(stats, tonumber(f.priority)))
redis.call('HSET', task_key(id), 'state', 'PENDING', 'score', score, 'ready_at', now)
redis.call('ZADD', pending, score, id)
emit(events, 'event', 'promoted', 'task', id, 'from', f.state, 'by', 'run_now')
made_ready(stats, 'promoted', 1, wake)
return f.state
