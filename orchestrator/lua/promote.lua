--[[
  promote: move due SCHEDULED and RETRYING tasks to PENDING, at most `limit` per call.

  KEYS[1] scheduled zset   KEYS[2] pending zset   KEYS[3] stats hash
  KEYS[4] events stream    KEYS[5] wake list
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit   most tasks moved by this call

  Returns {moved, more}: how many were promoted, and 1 when more are already due.
  A promoted task goes to the back of its priority level. Cost: O(limit log n).
  Errors: INVALID <what>. Events: promoted.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local scheduled, pending, stats, events, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if not is_uint(ARGV[4]) or tonumber(ARGV[4]) < 1 then return redis.error_reply('INVALID limit') end
local limit = tonumber(ARGV[4])
local now = now_ms()
local due = redis.call('ZRANGE', scheduled, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit + 1)
local moved = 0
for i = 1, math.min(#due, limit) do
  local id = due[i]
  local tkey = task_key(id)
  redis.call('ZREM', scheduled, id)
  local f = redis.call('HMGET', tkey, 'state', 'priority')
  if f[1] == 'SCHEDULED' or f[1] == 'RETRYING' then
    local score = int(pending_score(stats, tonumber(f[2]) or 5))
    redis.call('HSET', tkey, 'state', 'PENDING', 'score', score)
    redis.call('ZADD', pending, score, id)
    emit(events, 'event', 'promoted', 'task', id, 'from', f[1])
    moved = moved + 1
  end
end
made_ready(stats, 'promoted', moved, wake)
return {moved, #due > limit and 1 or 0}
