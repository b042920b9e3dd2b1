--[[
  enqueue: create one or more tasks, PENDING (or SCHEDULED when delayed).

  KEYS[1] pending    zset   KEYS[2] scheduled  zset   KEYS[3] stats  hash
  KEYS[4] events     stream KEYS[5] wake       list
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  max_payload   largest #args + #kwargs in bytes
  ARGV[5]  queue         the queue's name, stored in each record
  ARGV[6]  n             number of tasks (1 to 1,000); then 12 values per task:
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
local MAX_TASKS = 1000  -- per call (the client sends 1,000 at most): keeps unpack() within Lua's limits
if not n or n < 1 or #ARGV ~= 6 + n * WIDTH then
  return redis.error_reply('INVALID argument count')
end
if n > MAX_TASKS then return redis.error_reply('INVALID more than ' .. MAX_TASKS .. ' tasks in one call') end

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
local new = {}  -- the tasks to create, by position (0-based) in the call
local taken = {}  -- idempotency key -> the id it was given earlier in this call
local tkeys = {}
for i = 1, n do tkeys[i] = task_key(ARGV[6 + (i - 1) * WIDTH + 1]) end
-- One EXISTS for the whole call: a resent call (its reply was lost) finds its tasks.
local any_exist = redis.call('EXISTS', unpack(tkeys)) > 0
for i = 0, n - 1 do
  local a = 6 + i * WIDTH
  local id, key = ARGV[a + 1], ARGV[a + 12]
  local existing = false
  if any_exist and redis.call('EXISTS', tkeys[i + 1]) == 1 then
    existing = id  -- sent before: its reply was lost
  elseif taken[key] then
    existing = taken[key]
  elseif key ~= '' then
    local ukey = BASE .. 'unique:' .. key
    local first = redis.call('GET', ukey)
    if first then
      local state = redis.call('HGET', task_key(first), 'state')
      if state and state ~= 'SUCCESS' and state ~= 'FAILED' and state ~= 'CANCELLED' then
        existing = first
      end
    end
    if not existing then
      redis.call('SET', ukey, id)
      taken[key] = id
    end
  end
  out[#out + 1] = existing or id
  out[#out + 1] = (existing == false or existing == id) and 1 or 0
  if not existing then new[#new + 1] = i end
end
if #new == 0 then return out end

-- One sequence number per new task, reserved in one call; index entries added in one call each.
local seq = redis.call('HINCRBY', stats, 'seq', #new) - #new
local ready, later = {}, {}
for j, i in ipairs(new) do
  local a = 6 + i * WIDTH
  local id, name, priority = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local delay, key = tonumber(ARGV[a + 11]), ARGV[a + 12]
  local state, run_at = 'PENDING', now
  if delay > 0 then state, run_at = 'SCHEDULED', now + delay end
  local score = int(priority * PRIORITY_SPAN + seq + j)
  local tkey = tkeys[i + 1]
  redis.call('HSET', tkey,
    'id', id, 'name', name, 'queue', queue, 'state', state, 'priority', priority,
    'args', ARGV[a + 4], 'kwargs', ARGV[a + 5], 'attempts', 0,
    'max_retries', ARGV[a + 6], 'timeout_ms', ARGV[a + 7], 'backoff_ms', ARGV[a + 8],
    'backoff_max_ms', ARGV[a + 9], 'jitter', ARGV[a + 10],
    'created_at', now, 'run_at', run_at, 'score', score)
  if key ~= '' then redis.call('HSET', tkey, 'key', key) end  -- no empty field per task without one
  if state == 'PENDING' then
    ready[#ready + 1] = score
    ready[#ready + 1] = id
  else
    later[#later + 1] = run_at
    later[#later + 1] = id
  end
  emit(events, 'event', 'enqueued', 'task', id, 'name', name, 'priority', priority, 'state', state)
end
if #ready > 0 then redis.call('ZADD', pending, unpack(ready)) end
if #later > 0 then redis.call('ZADD', scheduled, unpack(later)) end
made_ready(stats, 'enqueued', #new, wake)
return out
