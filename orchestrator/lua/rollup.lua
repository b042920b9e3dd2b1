--[[
  rollup: sample the live workers' load into this minute's series hash, and roll the
  per-minute series of complete quarter hours up into 15-minute hashes. The scheduler
  calls it about once a minute per queue; any number of schedulers may: the sample is
  written by the first call of a minute only, and the last quarter rolled up is kept in
  KEYS[2], read and advanced in this one atomic call, so each quarter is rolled up once
  (and a roll-up is a deterministic function of the series, so doing one again changes
  nothing).

  KEYS[1] workers zset  (score = heartbeat deadline)
  KEYS[2] rolled string (start, ms, of the last quarter rolled up; expires with the series)
  KEYS[3] stats hash    (the counters a series snapshot copies; series_minute)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  limit   most quarters rolled up by this call (1 to BACKFILL_QUARTERS)

  Sample (BASE .. 'series:<minute ms>'): the minute's snapshot of the stats counters when no
  call took it yet (snapshot_series, as the counting scripts do), then, when the hash holds
  no `load` yet, `load` = running /
  concurrency summed over the live workers (deadline >= now; their `worker:<wid>` hashes,
  the first 1000), '%.4f', 0 with none; `workers` = how many are live. Expiry as the
  other series fields (SERIES_TTL_MS after the minute began).
  Roll-up (BASE .. 'rollup:<quarter ms>', for each complete quarter after the last rolled,
  at most BACKFILL_QUARTERS back, oldest first): how much each SERIES_FIELDS counter grew
  over the quarter (the first snapshot at or after its end minus the first at or after its
  start; fields that did not grow left out), `load` (mean of the minutes sampled, '%.4f'),
  `load_max`, `workers` (most live), `samples` (minutes sampled); not written when nothing
  was counted or sampled; expires ROLLUP_TTL_MS after its quarter ended. Cost: O(live
  workers) a minute; one HMGET per minute from the first quarter rolled to the first
  snapshot after the last (about 16 a quarter when a scheduler runs; a first call or a
  catch-up after downtime, which reach back BACKFILL_QUARTERS at most, up to 135).
  A series or roll-up hash of another type is skipped (read as empty, not written).

  Returns {sampled (1/0), rolled (quarters done by this call), more (1 when complete
  quarters remain), now (ms)}.
  Errors (nothing changed): INVALID <what>; CORRUPT <key> <what> (KEYS of another type, a
  stats counter not an integer).
  Events: none.
]]
local bad = bad_call(3, 4)
if bad then return redis.error_reply(bad) end
local workers, rolled, stats = KEYS[1], KEYS[2], KEYS[3]
if not is_uint(ARGV[4], BACKFILL_QUARTERS) or tonumber(ARGV[4]) < 1 then
  return redis.error_reply('INVALID limit')
end
local counters = {'series_minute', unpack(SERIES_FIELDS)}
local corrupt = corrupt_queue({workers, 'zset', rolled, 'string', stats, 'hash'}, stats, counters)
if corrupt then return redis.error_reply(corrupt) end
local limit = tonumber(ARGV[4])
local now = now_ms()
local minute = now - now % 60000

local function ratio(n)
  return string.format('%.4f', n)
end

-- The sample: this minute's snapshot (when no call took it yet), then load and workers,
-- at most once a minute (the HGET and the HSET in this one call).
snapshot_series(stats, now)
local skey = BASE .. 'series:' .. int(minute)
local sampled = 0
local seen, wrong = call_typed('HGET', skey, 'load')
if not seen and not wrong then
  local live = redis.call('ZRANGE', workers, now, '+inf', 'BYSCORE', 'LIMIT', 0, 1000)
  local busy, capacity = 0, 0
  for _, wid in ipairs(live) do
    local info = call_typed('HMGET', BASE .. 'worker:' .. wid, 'running', 'concurrency')
    if info and is_uint(info[1]) and is_uint(info[2]) then
      busy, capacity = busy + tonumber(info[1]), capacity + tonumber(info[2])
    end
  end
  local load = capacity > 0 and busy / capacity or 0
  if call_typed('HSET', skey, 'load', ratio(load), 'workers', #live) then
    redis.call('PEXPIREAT', skey, int(minute - OFFSET + SERIES_TTL_MS))
    sampled = 1
  end
end

-- The quarters to roll up: complete ones after the last rolled, at most BACKFILL_QUARTERS back.
local current = now - now % QUARTER_MS  -- the quarter in progress: not complete yet
local from = current - BACKFILL_QUARTERS * QUARTER_MS
local last = redis.call('GET', rolled)
if last and is_int(last) and tonumber(last) + QUARTER_MS > from then from = tonumber(last) + QUARTER_MS end
local n = math.max(math.min(limit, (current - from) / QUARTER_MS), 0)
if n == 0 then return {sampled, 0, 0, now} end

-- One walk over the minutes from the first quarter's start: the counters at each boundary
-- (the first snapshot at or after it; a minute without one counted nothing) and each
-- quarter's load samples.
local READ = {'load', 'workers', unpack(SERIES_FIELDS)}
local at = {}  -- at[i]: the counters at from + i * QUARTER_MS, i = 0..n
local loads = {}  -- loads[i]: {samples, sum, max, most workers} of quarter i = 0..n-1
local resolved, m = 0, from
while m <= minute and resolved <= n do
  local h = call_typed('HMGET', BASE .. 'series:' .. int(m), unpack(READ))
  local i = math.floor((m - from) / QUARTER_MS)
  if h and is_int(h[3]) then
    local snap = {}
    for j, name in ipairs(SERIES_FIELDS) do snap[name] = tonumber(h[j + 2]) or 0 end
    while resolved <= n and from + resolved * QUARTER_MS <= m do
      at[resolved], resolved = snap, resolved + 1
    end
  end
  local load = h and tonumber(h[1])
  if load and load >= 0 and i < n then
    local l = loads[i] or {0, 0, 0, 0}
    l[1], l[2], l[3] = l[1] + 1, l[2] + load, math.max(l[3], load)
    if is_uint(h[2]) then l[4] = math.max(l[4], tonumber(h[2])) end
    loads[i] = l
  end
  m = m + 60000
end
if resolved <= n then  -- no snapshot since (a series hash spoiled): the counters now
  local values = redis.call('HMGET', stats, unpack(SERIES_FIELDS))
  local snap = {}
  for j, name in ipairs(SERIES_FIELDS) do snap[name] = tonumber(values[j]) or 0 end
  for i = resolved, n do at[i] = snap end
end

-- Each quarter's roll-up: the counters' growth over it (never below 0: a counter reset by
-- hand), its load; nothing written for a quarter with neither.
for i = 0, n - 1 do
  local args = {}
  for _, name in ipairs(SERIES_FIELDS) do
    local grew = at[i + 1][name] - at[i][name]
    if grew > 0 then args[#args + 1], args[#args + 2] = name, int(grew) end
  end
  local l = loads[i]
  if l then
    for _, v in ipairs({'load', ratio(l[2] / l[1]), 'load_max', ratio(l[3]), 'workers', l[4], 'samples', l[1]}) do
      args[#args + 1] = v
    end
  end
  local quarter = from + i * QUARTER_MS
  local rkey = BASE .. 'rollup:' .. int(quarter)
  if #args > 0 and call_typed('HSET', rkey, unpack(args)) then
    redis.call('PEXPIREAT', rkey, int(quarter + QUARTER_MS - OFFSET + ROLLUP_TTL_MS))
  end
end
redis.call('SET', rolled, int(from + (n - 1) * QUARTER_MS), 'PX', SERIES_TTL_MS)
return {sampled, n, from + n * QUARTER_MS < current and 1 or 0, now}
