--[[
  claim: take up to n PENDING tasks, lowest priority value first, FIFO within a level.

  KEYS[1] pending zset   KEYS[2] running zset   KEYS[3] stats hash
  KEYS[4] events stream  KEYS[5] wake list
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  worker     the claiming worker's id
  ARGV[5]  n          most tasks to take (the worker's free slots)
  ARGV[6]  lease_ms   lease length; the running score is now + lease_ms

  Each claimed task becomes RUNNING with a fresh lease token (a per-queue counter, so
  tokens only grow) and its attempt counted. Returns a flat list, 9 values per task:
    id, token, name, args, kwargs, attempts, max_retries, timeout_ms, priority
  Errors: INVALID <what>. Events: claimed.
  When tasks remain pending it leaves a wake-up token, so the next idle worker starts.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local pending, running, stats, events, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local worker, n, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if worker == '' or not is_uint(ARGV[5]) or n < 1 or not is_uint(ARGV[6]) or lease < 1 then
  return redis.error_reply('INVALID worker, n or lease_ms')
end

local now = now_ms()
local deadline = now + lease
local popped = redis.call('ZPOPMIN', pending, n)
local out = {}
local claimed = 0
local token = 0
if #popped > 0 then  -- reserve one token per popped task in one call
  token = redis.call('HINCRBY', stats, 'tokens', #popped / 2) - #popped / 2
end
for i = 1, #popped, 2 do
  local id = popped[i]
  local tkey = task_key(id)
  local f = redis.call('HMGET', tkey, 'state', 'name', 'args', 'kwargs', 'attempts',
                       'max_retries', 'timeout_ms', 'priority')
  if f[1] == 'PENDING' then  -- anything else is a stale entry: dropped
    token = token + 1
    local attempts = (tonumber(f[5]) or 0) + 1
    redis.call('HSET', tkey, 'state', 'RUNNING', 'worker', worker, 'token', int(token),
               'attempts', attempts, 'started_at', now)
    redis.call('ZADD', running, deadline, id)
    emit(events, 'event', 'claimed', 'task', id, 'name', f[2], 'priority', f[8],
         'worker', worker, 'attempt', attempts)
    claimed = claimed + 1
    local row = {id, int(token), f[2], f[3], f[4], attempts, f[6], f[7], f[8]}
    for _, v in ipairs(row) do out[#out + 1] = v end
  end
end
if claimed > 0 then
  redis.call('HINCRBY', stats, 'started', claimed)
end
if #popped == n * 2 and redis.call('ZCARD', pending) > 0 then
  wake_one(wake)
end
return out
