--[[
  cancel: stop a task. PENDING, SCHEDULED and RETRYING tasks become CANCELLED at once;
  a RUNNING task gets a cancel request, published on ARGV[6] so its worker stops it at
  once; its next heartbeat also reports it (a worker that missed the message).

  KEYS[1] pending zset   KEYS[2] scheduled zset   KEYS[3] cancelled zset
  KEYS[4] stats hash     KEYS[5] events stream     KEYS[6] failed zset
  KEYS[7] retrying zset  (a RETRYING task written before the split may still sit in scheduled)
  KEYS[8] metrics hash   (best effort: cancelled:<label> when it cancels a waiting task)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id       ARGV[5]  ttl_ms   retention of the cancelled record; 0 keeps it
  ARGV[6]  channel  pub/sub channel of the queue's cancel requests (QueueKeys.cancels), under the
           base. Published best effort: a user the ACL denies the channel still cancels.

  Returns the state after the call: CANCELLED, or RUNNING (cancel requested).
  Errors (nothing changed): NOT_FOUND <id> (no record, or not a hash); BAD_STATE <state>
  for SUCCESS, FAILED or CANCELLED tasks; INVALID <what>; CORRUPT <key> <what> (a key it
  writes of another type, a counter not an integer).
  Error after a change: MALFORMED <id> <why>: a waiting task's record is malformed and was
  moved aside instead (FAILED, MalformedRecord); a RUNNING one is left to its worker.
  Events: cancelled or cancel_requested, or malformed.
  Notifies: CANCELLED on the channel finished:<id> of a waiting task it cancels (notify_final).
]]
local bad = bad_call(8, 6)
if bad then return redis.error_reply(bad) end
if ARGV[6]:sub(1, #BASE) ~= BASE then return redis.error_reply('INVALID channel is not under the base') end
local pending, scheduled, cancelled, stats, events, failed, retrying, metrics =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id = ARGV[4]
if not is_uint(ARGV[5]) then return redis.error_reply('INVALID ttl_ms') end
local corrupt = corrupt_queue({pending, 'zset', scheduled, 'zset', cancelled, 'zset', events, 'stream',
                                failed, 'zset', retrying, 'zset'}, stats, {'cancelled', 'failed', 'malformed'})
if corrupt then return redis.error_reply(corrupt) end
local tkey = task_key(id)
local f, why, badf = read_task(id, {'waiting', 'key', 'label'})
if not f then return redis.error_reply('NOT_FOUND ' .. id) end
local state = f.state
if why and (state == 'PENDING' or state == 'SCHEDULED' or state == 'RETRYING' or badf.state) then
  local now = now_ms()
  redis.call('ZREM', pending, id)
  redis.call('ZREM', scheduled, id)
  redis.call('ZREM', retrying, id)
  quarantine(id, f, why, badf, now, failed, stats, events)
  return redis.error_reply('MALFORMED ' .. id .. ' ' .. why)
end
if state == 'RUNNING' then
  redis.call('HSET', tkey, 'cancel_requested', 1)
  emit(events, 'event', 'cancel_requested', 'task', id)
  redis.pcall('PUBLISH', ARGV[6], id)
  return 'RUNNING'
end
if state ~= 'PENDING' and state ~= 'SCHEDULED' and state ~= 'RETRYING' then
  return redis.error_reply('BAD_STATE ' .. state)
end
local now = now_ms()
redis.call('ZREM', pending, id)
redis.call('ZREM', scheduled, id)
redis.call('ZREM', retrying, id)
redis.call('HSET', tkey, 'state', 'CANCELLED', 'completed_at', now)
redis.call('HINCRBY', stats, 'cancelled', 1)
redis.pcall('HINCRBY', metrics, 'cancelled:' .. (f.label ~= '' and f.label or f.name), 1)
release_unique(id)
retire(cancelled, id, now, tonumber(ARGV[5]))
notify_final(id, 'CANCELLED', f.waiting)
emit(events, 'event', 'cancelled', 'task', id, 'from', state)
return 'CANCELLED'
