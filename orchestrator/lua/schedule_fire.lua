--[[
  schedule_fire: fire a schedule's due ticks, once each, by compare-and-set of its last tick.

  KEYS[1] schedule  hash   KEYS[2] schedules zset   KEYS[3] pending  zset
  KEYS[4] stats     hash   KEYS[5] events    stream KEYS[6] wake     list
  KEYS[7] metrics   hash   KEYS[8] names     set    (metrics_records.py; never refused on)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id          the schedule's id (KEYS[1] is base .. 'schedule:' .. id)
  ARGV[5]  expected    the record's last_tick as the caller read it ('' for none fired)
  ARGV[6]  next_ms     the schedule's next tick after the ones handled here
  ARGV[7]  overlap     1: skip the ticks while the task of the last fired tick is unfinished
  ARGV[8]  previous    that task's id ('' for none: the record's last_task as read)
  ARGV[9..17]  the task: name, priority (0-9), args (JSON list), kwargs (JSON object),
           max_retries, timeout_ms, backoff_ms, backoff_max_ms, jitter (as enqueue.lua's)
  ARGV[18] nfire       then ARGV[19] nskipped: how many ticks the catch-up policy skipped in
           all (at least the number listed), then nfire tick, task id pairs (ascending
           ticks), then the skipped ticks listed (any order; the newest ones, at most 1,000)

  Returns {outcome, detail}:
    {'fired', n}      applied: n tasks created (a task id that exists already is left alone)
    {'stale', last}   last_tick is no longer `expected` (another scheduler fired): nothing written
    {'gone', ''}      the schedule was removed, or is paused: nothing written
  Applied: last_tick becomes the newest tick handled (fired or skipped; unchanged when there
  is none), next_ms is set in the record and the index, last_task is the task id of the
  newest tick fired. Each fired tick's task is created
  PENDING under its id with the fields and validations of enqueue.lua (the newest fired
  tick counts as fired, older ones as caught_up; ticks skipped by the policy or by
  overlap as skipped: per schedule in its record and in the metrics hash as
  schedule_ticks:<outcome>:<id>).
  Errors (nothing written): INVALID <what>; CORRUPT <key> <what> (a key of another type, a
  counter of stats or of the record that is not an integer).
  Events: enqueued per task created; tick (schedule, tick, outcome, task) per tick.
]]
local bad = bad_call(8, 19, true)
if bad then return redis.error_reply(bad) end
local record, index, pending, stats, events, wake, metrics, names =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, expected, next_ms, overlap, previous = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if id == '' or record ~= BASE .. 'schedule:' .. id then return redis.error_reply('INVALID id') end
if expected ~= '' and not is_uint(expected) then return redis.error_reply('INVALID expected') end
if not is_uint(next_ms) then return redis.error_reply('INVALID next_ms') end
if overlap ~= '0' and overlap ~= '1' then return redis.error_reply('INVALID overlap') end
local MAX_MS = 315360000000
local name, priority, args, kwargs = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
if name == '' then return redis.error_reply('INVALID empty name') end
if not is_uint(priority, 9) then return redis.error_reply('INVALID priority') end
if not is_uint(ARGV[13], 1000) then return redis.error_reply('INVALID max_retries') end
for i = 14, 16 do
  if not is_uint(ARGV[i], MAX_MS) then return redis.error_reply('INVALID timeout_ms, backoff_ms or backoff_max_ms') end
end
if ARGV[17] ~= '0' and ARGV[17] ~= '1' then return redis.error_reply('INVALID jitter') end
if not is_uint(ARGV[18], 1000) then return redis.error_reply('INVALID nfire') end
local nfire = tonumber(ARGV[18])
if #ARGV < 19 + 2 * nfire then return redis.error_reply('INVALID argument count') end
if not is_uint(ARGV[19]) or tonumber(ARGV[19]) < #ARGV - 19 - 2 * nfire then
  return redis.error_reply('INVALID nskipped')
end
local newest = tonumber(expected) or -1
local fire, skip = {}, {}
for i = 20, 19 + 2 * nfire, 2 do
  if not is_uint(ARGV[i]) or ARGV[i + 1] == '' then return redis.error_reply('INVALID tick or task id') end
  fire[#fire + 1] = {tonumber(ARGV[i]), ARGV[i + 1]}
end
for i = 20 + 2 * nfire, #ARGV do
  if not is_uint(ARGV[i]) then return redis.error_reply('INVALID skipped tick') end
  skip[#skip + 1] = tonumber(ARGV[i])
end
if #skip > 1000 then return redis.error_reply('INVALID over 1,000 skipped ticks listed') end
for _, t in ipairs(fire) do
  if t[1] <= newest then return redis.error_reply('INVALID tick not after expected') end
  newest = t[1]
end
local last_fire = newest
for _, t in ipairs(skip) do
  if t <= (tonumber(expected) or -1) then return redis.error_reply('INVALID tick not after expected') end
  if t > newest then newest = t end
end
local corrupt = corrupt_queue({record, 'hash', index, 'zset', pending, 'zset', wake, 'list', events, 'stream'},
  stats, {'seq', 'enqueued'})
if corrupt then return redis.error_reply(corrupt) end

local f = redis.call('HMGET', record, 'last_tick', 'paused', 'fired', 'caught_up', 'skipped')
if not f[1] or f[2] == '1' then return {'gone', ''} end
if f[1] ~= expected then return {'stale', f[1]} end
for i, counter in ipairs({'fired', 'caught_up', 'skipped'}) do  -- bumped after the first write: checked first
  local v = f[i + 2]
  if v and not is_int(v) then return redis.error_reply('CORRUPT ' .. record .. ' ' .. counter .. ' ' .. quote(v) .. ' is not a count') end
end

local now = now_ms()
local nskipped = tonumber(ARGV[19])
if #fire > 0 and overlap == '1' and previous ~= '' then
  local state = call_typed('HGET', task_key(previous), 'state')
  if type(state) == 'string' and state ~= 'SUCCESS' and state ~= 'FAILED' and state ~= 'CANCELLED' then
    for _, t in ipairs(fire) do skip[#skip + 1] = t[1] end
    nskipped = nskipped + #fire
    fire = {}
  end
end
local created = 0
local counts = {fired = 0, caught_up = 0, skipped = nskipped}
local new_last = newest >= 0 and int(newest) or expected
redis.call('HSET', record, 'last_tick', new_last, 'next_ms', next_ms)
redis.call('ZADD', index, next_ms, id)
if #fire > 0 then redis.call('HSET', record, 'last_task', fire[#fire][2]) end
local ready = {}
local label = name
for _, t in ipairs(fire) do
  local task_id = t[2]
  local kind = t[1] == last_fire and 'fired' or 'caught_up'
  counts[kind] = counts[kind] + 1
  if redis.call('EXISTS', task_key(task_id)) == 0 then
    if created == 0 then label = count_enqueued(metrics, names, name, 1) else redis.pcall('HINCRBY', metrics, 'enqueued:' .. label, 1) end
    created = created + 1
    local score = pending_score(stats, tonumber(priority))
    redis.call('HSET', task_key(task_id),
      'name', name, 'state', 'PENDING', 'priority', priority,
      'args', args, 'kwargs', kwargs, 'attempts', 0,
      'max_retries', ARGV[13], 'timeout_ms', ARGV[14], 'backoff_ms', ARGV[15],
      'backoff_max_ms', ARGV[16], 'jitter', ARGV[17],
      'created_at', now, 'run_at', now, 'score', int(score), 'ready_at', now)
    if label ~= name then redis.call('HSET', task_key(task_id), 'label', label) end
    ready[#ready + 1] = int(score)
    ready[#ready + 1] = task_id
    emit(events, 'event', 'enqueued', 'task', task_id, 'name', name, 'priority', priority, 'state', 'PENDING')
  end
  emit(events, 'event', 'tick', 'schedule', id, 'tick', int(t[1]), 'outcome', kind, 'task', task_id)
end
for _, t in ipairs(skip) do
  if #skip <= 100 then emit(events, 'event', 'tick', 'schedule', id, 'tick', int(t), 'outcome', 'skipped') end
end
if #ready > 0 then redis.call('ZADD', pending, unpack(ready)) end
for kind, n in pairs(counts) do
  if n > 0 then
    redis.call('HINCRBY', record, kind, n)
    redis.pcall('HINCRBY', metrics, 'schedule_ticks:' .. kind .. ':' .. id, n)
  end
end
if created > 0 then
  snapshot_series(stats, now)
  made_ready(stats, 'enqueued', created, wake)
end
return {'fired', created}
