--[[
  enqueue: create one or more tasks, PENDING (or SCHEDULED when delayed).

  KEYS[1] pending    zset   KEYS[2] scheduled  zset   KEYS[3] stats  hash
  KEYS[4] events     stream KEYS[5] wake       list
  KEYS[6] metrics    hash   KEYS[7] names      set    (metrics_records.py; never refused on)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  max_payload   largest #args + #kwargs in bytes
  ARGV[5]  n             number of tasks (1 to 1,000); then 13 values per task:
           id, name, priority (0-9), args (JSON list), kwargs (JSON object),
           max_retries (0-1,000), timeout_ms, backoff_ms, backoff_max_ms (each at most
           ten years), jitter (0|1), delay_ms (at most ten years), key, unique_key ('' for
           none; at most 1,024 bytes each)
           Every number is a canonical decimal integer ('10', never '1e1', '0x0a' or '010').

  Returns a flat list: id, created (1 new | 0 an existing task that holds the key) per task.
  A task id that already exists is answered as created and left alone, so a call
  resent after a lost reply neither fails nor duplicates anything.
  Errors (nothing written: every argument and every key the call writes is checked
  first): INVALID <what>, TOO_LARGE <bytes>; CORRUPT <key> <what> when a key of the queue
  holds the wrong type, or stats a seq or enqueued counter that is not a canonical integer.
  Events: enqueued (state PENDING or SCHEDULED).
  Metrics (best effort, per call): enqueued:<label> per task name (a new name is admitted
  into names while it holds fewer than MAX_NAMES, else it counts as __other__ and the record
  keeps field label); the minute's series snapshot when it is the minute's first. A
  PENDING task's record gets no ready_at (read as created_at). A record leaves out every field
  at its RECORD_DEFAULT, attempts and a PENDING task's run_at (models.RECORD).
  Idempotency (a second enqueue returns the first task's id and creates nothing):
    key          'key:<key>' names the task for as long as its record exists (waiting,
                 running, in the dead-letter, or kept result_ttl after it ended);
    unique_key   'unique:<unique_key>' names the task while it is unfinished.
  key is looked at first. An entry that is not a string, or names a task that is gone
  (or finished, for unique_key), is taken over by the new task.
]]
local bad = bad_call(7, 5, true)  -- the exact count of ARGV is checked once n is known
if bad then return redis.error_reply(bad) end
local pending, scheduled, stats, events, wake, metrics, names =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local WIDTH = 13
local MAX_TASKS = 1000  -- per call (the client sends 1,000 at most): keeps unpack() within Lua's limits
local MAX_MS = 315360000000  -- ten years, as the client's bound on durations
local MAX_KEY_BYTES = 1024  -- the client's 256 characters, in UTF-8 at most
local DEFAULTED = {  -- offset in a task's values, field: written only when not at its RECORD_DEFAULT
  {3, 'priority'}, {4, 'args'}, {5, 'kwargs'}, {6, 'max_retries'}, {7, 'timeout_ms'},
  {8, 'backoff_ms'}, {9, 'backoff_max_ms'}, {10, 'jitter'},
}
local NUMBERS = {  -- offset in a task's values, name, largest value
  {6, 'max_retries', 1000}, {7, 'timeout_ms', MAX_MS}, {8, 'backoff_ms', MAX_MS},
  {9, 'backoff_max_ms', MAX_MS}, {11, 'delay_ms', MAX_MS},
}
if not is_uint(ARGV[4]) then return redis.error_reply('INVALID max_payload') end
local max_payload = tonumber(ARGV[4])
if not is_uint(ARGV[5], MAX_TASKS) or ARGV[5] == '0' then
  return redis.error_reply('INVALID n: 1 to ' .. MAX_TASKS .. ' tasks in one call')
end
local n = tonumber(ARGV[5])
if #ARGV ~= 5 + n * WIDTH then return redis.error_reply('INVALID argument count') end

local function shown(value)  -- a value quoted in an error: short and printable, whatever was sent
  return "'" .. (string.gsub(string.sub(value, 1, 40), '[^%w%p ]', '?')) .. "'"
end

-- The error of the task whose values start after ARGV[a], or nil.
local function task_error(a, seen)
  local id, name = ARGV[a + 1], ARGV[a + 2]
  if id == '' or name == '' then return 'INVALID empty id or name' end
  if seen[id] then return 'INVALID duplicate task id ' .. id end
  seen[id] = true
  if not is_uint(ARGV[a + 3], 9) then return 'INVALID priority ' .. shown(ARGV[a + 3]) end
  local size = #ARGV[a + 4] + #ARGV[a + 5]
  if size > max_payload then return 'TOO_LARGE ' .. size end
  for _, number in ipairs(NUMBERS) do
    local value = ARGV[a + number[1]]
    if not is_uint(value, number[3]) then return 'INVALID ' .. number[2] .. ' ' .. shown(value) end
  end
  if ARGV[a + 10] ~= '0' and ARGV[a + 10] ~= '1' then return 'INVALID jitter ' .. shown(ARGV[a + 10]) end
  if #ARGV[a + 12] > MAX_KEY_BYTES or #ARGV[a + 13] > MAX_KEY_BYTES then
    return 'INVALID key or unique_key over ' .. MAX_KEY_BYTES .. ' bytes'
  end
end

-- A counter of stats (false when absent); nil when stats is not a hash. (Two HGETs, not one
-- HMGET: the producer's ACL recipe grants HGET only, and deployed ACLs must keep working.)
local function counter(name)
  local v = redis.pcall('HGET', stats, name)
  if type(v) == 'table' and v.err then
    if tostring(v.err):find('WRONGTYPE', 1, true) then return nil end  -- (tostring: call_typed says why)
    error(v)  -- an ACL refusal, say: not ours to hide
  end
  return v
end

-- The error of a queue key or counter this call would fail on halfway, or nil. Only the
-- keys it may write are looked at (pending and scheduled as its tasks need them, events
-- when they are on): the TYPE calls are most of what this check costs. wake is checked by
-- its LLEN, which made_ready uses at the end (nothing in between writes wake).
local wake_len
local function queue_error(ready, later)
  local wrong
  wake_len, wrong = call_typed('LLEN', wake)
  if wrong then return 'CORRUPT ' .. wake .. ' is a ' .. redis.call('TYPE', wake).ok .. ', not a list' end
  local expected = {}
  if ready then expected[#expected + 1] = {pending, 'zset'} end
  if later then expected[#expected + 1] = {scheduled, 'zset'} end
  if MAXLEN > 0 then expected[#expected + 1] = {events, 'stream'} end
  for _, key in ipairs(expected) do
    local kind = redis.call('TYPE', key[1]).ok
    if kind ~= 'none' and kind ~= key[2] then
      return 'CORRUPT ' .. key[1] .. ' is a ' .. kind .. ', not a ' .. key[2]
    end
  end
  local seq, enqueued = counter('seq'), counter('enqueued')
  if seq == nil then return 'CORRUPT ' .. stats .. ' is not a hash' end
  if seq and not is_uint(seq, PRIORITY_SPAN - 1 - n) then
    return 'CORRUPT ' .. stats .. ' seq ' .. shown(seq) .. ' is not a sequence number'
  end
  if enqueued and not is_uint(enqueued, MAX_INT - n) then
    return 'CORRUPT ' .. stats .. ' enqueued ' .. shown(enqueued) .. ' is not a count'
  end
end

-- Validate everything before the first write: Redis does not roll back a failed script.
local seen, ready, later = {}, false, false
for i = 0, n - 1 do
  local err = task_error(5 + i * WIDTH, seen)
  if err then return redis.error_reply(err) end
  if ARGV[5 + i * WIDTH + 11] == '0' then ready = true else later = true end
end
local err = queue_error(ready, later)
if err then return redis.error_reply(err) end

-- Decide, reading only, which tasks are new and which keys they take.
local now, now_s = clock_ms()
local out = {}
local new = {}  -- the tasks to create, by position (0-based) in the call
local taken = {}  -- entry ('key:...' or 'unique:...') -> the id it was given earlier in this call
local claims = {}  -- entries to point at new tasks: entry, id pairs
local tkeys = {}
for i = 1, n do tkeys[i] = task_key(ARGV[5 + (i - 1) * WIDTH + 1]) end
-- One EXISTS for the whole call: a resent call (its reply was lost) finds its tasks.
local any_exist = redis.call('EXISTS', unpack(tkeys)) > 0
for i = 0, n - 1 do
  local a = 5 + i * WIDTH
  local id, key, unique_key = ARGV[a + 1], ARGV[a + 12], ARGV[a + 13]
  local kkey = key ~= '' and BASE .. 'key:' .. key
  local ukey = unique_key ~= '' and BASE .. 'unique:' .. unique_key
  local existing = false
  if any_exist and redis.call('EXISTS', tkeys[i + 1]) == 1 then
    existing = id  -- sent before: its reply was lost
  end
  if not existing and kkey then existing = taken[kkey] or record_holder(kkey) or false end
  if not existing and ukey then existing = taken[ukey] or unfinished_holder(ukey) or false end
  if not existing then
    for _, entry in ipairs({kkey, ukey}) do
      if entry then
        taken[entry] = id
        claims[#claims + 1] = entry
        claims[#claims + 1] = id
      end
    end
  end
  out[#out + 1] = existing or id
  out[#out + 1] = (existing == false or existing == id) and 1 or 0
  if not existing then new[#new + 1] = i end
end
if #new == 0 then return out end

-- Write. One sequence number per new task, reserved in one call; index entries added in one call each.
for c = 1, #claims, 2 do redis.call('SET', claims[c], claims[c + 1]) end
local seq = redis.call('HINCRBY', stats, 'seq', #new) - #new
local ready, later = {}, {}
-- Metrics first: each distinct name counted once (in order of appearance), its label decided.
local per_name, order, labels = {}, {}, {}
for _, i in ipairs(new) do
  local name = ARGV[5 + i * WIDTH + 2]
  if not per_name[name] then order[#order + 1] = name end
  per_name[name] = (per_name[name] or 0) + 1
end
for _, name in ipairs(order) do labels[name] = count_enqueued(metrics, names, name, per_name[name]) end
for j, i in ipairs(new) do
  local a = 5 + i * WIDTH
  local id, name, priority = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local delay, key, unique_key = tonumber(ARGV[a + 11]), ARGV[a + 12], ARGV[a + 13]
  local state, run_at = 'PENDING', now
  if delay > 0 then state, run_at = 'SCHEDULED', now + delay end
  local score = int(priority * PRIORITY_SPAN + seq + j)
  local tkey = tkeys[i + 1]
  -- A field at its default is left out (read_task and Task.from_redis fill it in), and so
  -- are attempts (0), a PENDING task's run_at (created_at) and ready_at (read as the later
  -- of created_at and run_at): a queued task's record costs about half as much memory. Its id
  -- and queue are its key's (models.RECORD): not fields.
  local rec = {'name', name, 'state', state, 'created_at', now_s, 'score', score}
  for _, at in ipairs(DEFAULTED) do
    local value = ARGV[a + at[1]]
    if value ~= RECORD_DEFAULT[at[2]] then rec[#rec + 1] = at[2]; rec[#rec + 1] = value end
  end
  if state ~= 'PENDING' then rec[#rec + 1] = 'run_at'; rec[#rec + 1] = run_at end
  if key ~= '' then rec[#rec + 1] = 'key'; rec[#rec + 1] = key end
  if unique_key ~= '' then rec[#rec + 1] = 'unique_key'; rec[#rec + 1] = unique_key end
  if labels[name] ~= name then rec[#rec + 1] = 'label'; rec[#rec + 1] = labels[name] end
  redis.call('HSET', tkey, unpack(rec))
  if state == 'PENDING' then
    ready[#ready + 1] = score
    ready[#ready + 1] = id
  else
    later[#later + 1] = run_at
    later[#later + 1] = id
  end
  emit(events, 'event', 'enqueued', 'task', id, 'name', name, 'priority', ARGV[a + 3], 'state', state)
end
if #ready > 0 then redis.call('ZADD', pending, unpack(ready)) end
if #later > 0 then redis.call('ZADD', scheduled, unpack(later)) end
snapshot_series(stats, now)
made_ready(stats, 'enqueued', #new, wake, wake_len)
return out
