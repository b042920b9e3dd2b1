--[[
  release: give claimed tasks back to PENDING at once (graceful shutdown). The attempt
  is not counted and each task keeps its original place in the pending order; ready_at = now.

  KEYS[1] running zset   KEYS[2] pending zset   KEYS[3] stats hash
  KEYS[4] events stream  KEYS[5] wake list      KEYS[6] cancelled zset
  KEYS[7] failed zset    KEYS[8] metrics hash (best effort: cancelled:<label> per task cancelled)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]     ttl_ms      retention of a record cancelled here; 0 keeps it
  ARGV[5..]   pairs: task id, lease token

  A task with a pending cancel request is not put back: it ends CANCELLED. A malformed
  record held under its token is moved aside instead (FAILED, MalformedRecord). Each attempt
  ended joins its record's history (released, or cancelled: 'cancel requested').

  Returns the ids released; a pair whose token is stale is skipped (LEASE_LOST is not
  raised, since a shutting-down worker has nothing to do about it).
  Errors (nothing changed): INVALID <what>; CORRUPT <key> <what> (a key it writes of
  another type, a counter not an integer). Events: released, cancelled, malformed.
  Notifies: CANCELLED on the channel finished:<id> of a task whose cancel was requested (notify_final).
]]
local bad = bad_call(8, 4, true)
if bad then return redis.error_reply(bad) end
local running, pending, stats, events, wake, cancelled, failed, metrics =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
if not is_uint(ARGV[4]) or (#ARGV - 4) % 2 ~= 0 then return redis.error_reply('INVALID ttl_ms or id/token pairs') end
local corrupt = corrupt_queue({running, 'zset', pending, 'zset', events, 'stream', wake, 'list',
                                cancelled, 'zset', failed, 'zset'}, stats, {'seq', 'released', 'cancelled', 'failed', 'malformed'})
if corrupt then return redis.error_reply(corrupt) end
local out = {}
local now = nil
local counts = {}
for i = 5, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tkey = task_key(id)
  local f, why, badf = read_task(id, {'waiting', 'token', 'attempts', 'score', 'priority', 'worker', 'cancel_requested', 'key', 'label',
                                      'started_at', 'history'})
  local held = f and f.state == 'RUNNING' and f.token == token and not badf.token
  if held and why then
    now = now or now_ms()
    redis.call('ZREM', running, id)
    quarantine(id, f, why, badf, now, failed, stats, events)
  elseif held and f.cancel_requested == '1' then
    now = now or now_ms()
    redis.call('ZREM', running, id)
    finish_cancelled(id, now, cjson.encode({type = 'Cancelled', message = 'cancel requested', traceback = ''}),
                     cancelled, stats, tonumber(ARGV[4]), f, 'cancel requested')
    emit(events, 'event', 'cancelled', 'task', id, 'worker', f.worker)
    tally_outcome(counts, f, 'CANCELLED', now, false)
  elseif held then
    local score = f.score ~= '' and f.score or int(pending_score(stats, tonumber(f.priority)))
    now = now or now_ms()
    redis.call('HSET', tkey, 'state', 'PENDING', 'attempts', math.max(tonumber(f.attempts) - 1, 0),
               'worker', '', 'ready_at', now, 'history', with_attempt(f, now, 'released', ''))
    redis.call('ZREM', running, id)
    redis.call('ZADD', pending, score, id)
    emit(events, 'event', 'released', 'task', id, 'worker', f.worker)
    out[#out + 1] = id
  end
end
made_ready(stats, 'released', #out, wake)
add_counts(metrics, counts)
return out
