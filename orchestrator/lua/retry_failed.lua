--[[
  retry_failed: bring dead-letter (FAILED) tasks back to PENDING with attempts reset.

  KEYS[1] failed zset   KEYS[2] pending zset   KEYS[3] stats hash
  KEYS[4] events stream KEYS[5] wake list
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit   with no ids: most tasks taken from the failed set, oldest first
  ARGV[5..] ids    the tasks to retry (each must be FAILED)

  A task with an idempotency key takes it back unless another unfinished task holds it.
  Returns the ids moved. Errors (nothing changed): NOT_FOUND <id>; BAD_STATE <id> <state>
  when a named task is not FAILED; INVALID <what>. Events: requeued.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local failed, pending, stats, events, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if not is_uint(ARGV[4]) or tonumber(ARGV[4]) < 1 then return redis.error_reply('INVALID limit') end
local ids = {}
if #ARGV >= 5 then
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
  for _, id in ipairs(ids) do
    local state = redis.call('HGET', task_key(id), 'state')
    if not state then return redis.error_reply('NOT_FOUND ' .. id) end
    if state ~= 'FAILED' then return redis.error_reply('BAD_STATE ' .. id .. ' ' .. state) end
  end
else
  ids = redis.call('ZRANGE', failed, 0, tonumber(ARGV[4]) - 1)
end
local out = {}
for _, id in ipairs(ids) do
  local tkey = task_key(id)
  local f = redis.call('HMGET', tkey, 'state', 'priority', 'key')
  redis.call('ZREM', failed, id)
  if f[1] == 'FAILED' then
    if f[3] and f[3] ~= '' then
      local ukey = BASE .. 'unique:' .. f[3]
      local holder = redis.call('GET', ukey)
      local held = holder and redis.call('HGET', task_key(holder), 'state')
      if not held or held == 'SUCCESS' or held == 'FAILED' or held == 'CANCELLED' then
        redis.call('SET', ukey, id)
      end
    end
    local score = int(pending_score(stats, tonumber(f[2]) or 5))
    redis.call('HSET', tkey, 'state', 'PENDING', 'attempts', 0, 'score', score, 'completed_at', '',
               'cancel_requested', 0)
    redis.call('ZADD', pending, score, id)
    emit(events, 'event', 'requeued', 'task', id)
    out[#out + 1] = id
  end
end
made_ready(stats, 'requeued', #out, wake)
return out
