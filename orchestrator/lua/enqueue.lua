--[[
  enqueue: create one or more tasks, PENDING (or SCHEDULED when delayed).

  KEYS[1] pending    zset   KEYS[2] scheduled  zset   KEYS[3] stats  hash
  KEYS[4] events     stream KEYS[5] wake       list
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  max_payload   largest #args + #kwargs in bytes
  ARGV[5]  queue         the queue's name, stored in each record
  ARGV[6]  n             number of tasks; then 12 values per task:
           id, name, priority (0-9), args (JSON list), kwargs (JSON object),
           max_retries, timeout_ms, backoff_ms, backoff_max_ms, jitter (0|1),
           delay_ms, key (idempotency key or '')

  Returns a flat list: id, created (1 new | 0 the key's unfinished task) per task.
  A task id that already exists is answered as created and left alone, so a call
  resent after a lost reply neither fails nor duplicates anything.
  Errors (nothing written): INVALID <what>, TOO_LARGE <bytes>.
  Events: enqueued (state PENDING or SCHEDULED).
  An idempotency key maps to its task while that task is unfinished; a second enqueue
  with the key returns the first task's id and creates nothing.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local pending, scheduled, stats, events, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local max_payload = tonumber(ARGV[4])
local queue = ARGV[5]
local n = tonumber(ARGV[6])
local WIDTH = 12
if not n or n < 1 or #ARGV ~= 6 + n * WIDTH then
  return redis.error_reply('INVALID argument count')
end

-- Validate everything before the first write: Redis does not roll back a failed script.
local seen = {}
for i = 0, n - 1 do
  local a = 6 + i * WIDTH
  local id, name = ARGV[a + 1], ARGV[a + 2]
  if id == '' or name == '' then return redis.error_reply('INVALID empty id or name') end
  if seen[id] then return redis.error_reply('INVALID duplicate task id ' .. id) end
  seen[id] = true
  if not is_uint(ARGV[a + 3], 9) then return redis.error_reply('INVALID priority ' .. ARGV[a + 3]) end
  local size = #ARGV[a + 4] + #ARGV[a + 5]
  if size > max_payload then return redis.error_reply('TOO_LARGE ' .. size) end
  for j = 6, 11 do
    if not is_uint(ARGV[a + j]) then return redis.error_reply('INVALID number ' .. ARGV[a + j]) end
  end
end

local now = now_ms()
local out = {}
local created = 0
for i = 0, n - 1 do
  local a = 6 + i * WIDTH
  local id, name, priority = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local delay, key = tonumber(ARGV[a + 11]), ARGV[a + 12]
  local existing = false
  if redis.call('EXISTS', task_key(id)) == 1 then
    existing = id  -- sent before: its reply was lost
  elseif key ~= '' then
    local ukey = BASE .. 'unique:' .. key
    local first = redis.call('GET', ukey)
    if first then
      local state = redis.call('HGET', task_key(first), 'state')
      if state and state ~= 'SUCCESS' and state ~= 'FAILED' and state ~= 'CANCELLED' then
        existing = first
      end
    end
    if not existing then redis.call('SET', ukey, id) end
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = existing == id and 1 or 0
  else
    local state, run_at = 'PENDING', now
    if delay > 0 then state, run_at = 'SCHEDULED', now + delay end
    local score = pending_score(stats, priority)
    redis.call('HSET', task_key(id),
      'id', id, 'name', name, 'queue', queue, 'state', state, 'priority', priority,
      'args', ARGV[a + 4], 'kwargs', ARGV[a + 5], 'attempts', 0,
      'max_retries', ARGV[a + 6], 'timeout_ms', ARGV[a + 7], 'backoff_ms', ARGV[a + 8],
      'backoff_max_ms', ARGV[a + 9], 'jitter', ARGV[a + 10], 'key', key,
      'created_at', now, 'run_at', run_at, 'score', int(score))
    if state == 'PENDING' then
      redis.call('ZADD', pending, int(score), id)
    else
      redis.call('ZADD', scheduled, run_at, id)
    end
    emit(events, 'event', 'enqueued', 'task', id, 'name', name, 'priority', priority, 'state', state)
    created = created + 1
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
made_ready(stats, 'enqueued', created, wake)
return out
