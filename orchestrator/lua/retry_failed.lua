--[[
  retry_failed: bring dead-letter (FAILED) tasks back to PENDING with attempts reset.

  KEYS[1] failed zset   KEYS[2] pending zset   KEYS[3] stats hash
  KEYS[4] events stream KEYS[5] wake list
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit   with no ids: most entries of the failed set read, oldest first
  ARGV[5]  offset  with no ids: where in the failed set to start (past what earlier pages
                   skipped); with ids, 0
  ARGV[6..] ids    the tasks to retry (each must be FAILED)

  A requeued task gets ready_at = now; its failed attempt (told by the record's own fields
  until now) joins its history. A task takes its key entry back unless another record holds it, and its unique key
  unless another unfinished task holds it.
  A malformed record stays FAILED (it would only fail again); taken from the failed set,
  it is skipped; an id there whose record is gone or not a hash is dropped.
  Returns, with ids, the ids moved; with none, {ids moved, next offset, more}: the next
  offset is offset plus the entries read here that stay in the failed set (malformed), more
  is 1 when limit entries were read (call again from the next offset). Errors (nothing changed): NOT_FOUND <id>; BAD_STATE <id> <state>
  when a named task is not FAILED; MALFORMED <id> <why> when a named record is malformed;
  INVALID <what>; CORRUPT <key> <what> (a key it writes of another type, a counter not an
  integer). Events: requeued, dropped.
]]
local bad = bad_call(5, 5, true)
if bad then return redis.error_reply(bad) end
local failed, pending, stats, events, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if not is_uint(ARGV[4]) or tonumber(ARGV[4]) < 1 or not is_uint(ARGV[5]) then
  return redis.error_reply('INVALID limit or offset')
end
local limit, offset = tonumber(ARGV[4]), tonumber(ARGV[5])
local corrupt = corrupt_queue({failed, 'zset', pending, 'zset', events, 'stream', wake, 'list'},
                              stats, {'seq', 'requeued'})
if corrupt then return redis.error_reply(corrupt) end
local ids = {}
local paging = #ARGV == 5
if not paging then
  for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
  for _, id in ipairs(ids) do
    local f, why = read_task(id, {'priority', 'key'})
    if not f then return redis.error_reply('NOT_FOUND ' .. id) end
    if f.state and f.state ~= 'FAILED' then return redis.error_reply('BAD_STATE ' .. id .. ' ' .. f.state) end
    if why then return redis.error_reply('MALFORMED ' .. id .. ' ' .. why) end
  end
else
  ids = redis.call('ZRANGE', failed, offset, offset + limit - 1)
end
local out, kept = {}, 0
local now = #ids > 0 and now_ms() or 0
for _, id in ipairs(ids) do
  local tkey = task_key(id)
  local f, why = read_task(id, {'priority', 'key', 'worker', 'token', 'started_at', 'completed_at', 'error',
                                'history'})
  if not f then
    redis.call('ZREM', failed, id)
    dropped(events, id, why)
  elseif not why and f.state ~= 'FAILED' then
    redis.call('ZREM', failed, id)
  elseif not why then
    redis.call('ZREM', failed, id)
    retake_keys(id)
    local score = int(pending_score(stats, tonumber(f.priority)))
    redis.call('HSET', tkey, 'state', 'PENDING', 'attempts', 0, 'score', score, 'completed_at', '',
               'cancel_requested', 0, 'worker', '', 'ready_at', now)
    if f.started_at ~= '' then  -- the failed attempt its record told joins the history
      local ended = tonumber(f.completed_at) or now
      redis.call('HSET', tkey, 'history', with_attempt(f, ended, 'failed', error_line(f.error)))
    end
    redis.call('ZADD', pending, score, id)
    emit(events, 'event', 'requeued', 'task', id)
    out[#out + 1] = id
  else
    kept = kept + 1  -- malformed: stays FAILED, and in the failed set
  end
end
made_ready(stats, 'requeued', #out, wake)
if paging then return {out, offset + kept, #ids == limit and 1 or 0} end
return out
