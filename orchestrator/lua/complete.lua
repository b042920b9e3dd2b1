--[[
  complete: a RUNNING task succeeded; only the holder of the current lease may say so.

  KEYS[1] running zset   KEYS[2] done zset   KEYS[3] stats hash   KEYS[4] events stream
  KEYS[5] failed zset    KEYS[6] metrics hash (best effort: metrics_records.py)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id          ARGV[5]  token     the lease token from claim
  ARGV[6]  result      JSON               ARGV[7]  ttl_ms   record retention; 0 keeps it

  Returns the completion time (ms). The record becomes SUCCESS, leaves running, enters
  done, and expires after ttl_ms; its unique key is released (its key entry stays, and
  expires with the record: retire). Its history is left alone: the record's worker, token,
  started_at and completed_at tell this attempt (records.decode_history).
  Errors (nothing changed): NOT_FOUND <id> (no record, or not a hash); LEASE_LOST <id> when
  the task is not RUNNING under this token (reaped, released, cancelled or claimed again);
  INVALID <what>; CORRUPT <key> <what> (a key it writes of another type, a counter not
  an integer).
  Error after a change: MALFORMED <id> <why>: the record (held under this token) is
  malformed and was moved aside instead (FAILED, MalformedRecord).
  Events: succeeded, or malformed.
  Notifies: SUCCESS (or FAILED, moved aside) on the channel finished:<id> (notify_final).
  Metrics: run:<le>:succeeded:<label> (its run-time bucket) and run_ms:<label>; the
  minute's series snapshot when it is the minute's first. A LEASE_LOST refusal changes one
  thing, the metrics field late (+1), except when the record is SUCCESS under this very
  token (this call, resent after its reply was lost): the one counter a refusal may change.
]]
local bad = bad_call(6, 7)
if bad then return redis.error_reply(bad) end
local running, done, stats, events, failed, metrics = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, token, result = ARGV[4], ARGV[5], ARGV[6]
if not is_uint(ARGV[7]) then return redis.error_reply('INVALID ttl_ms') end
local corrupt, seen = corrupt_queue({done, 'zset', events, 'stream'},  -- (running: by the first write)
                                    stats, {'succeeded', 'runs', 'runtime_ms', 'failed', 'malformed'}, 'series_minute')
if corrupt then return redis.error_reply(corrupt) end
local f, why, badf = read_task(id, {'waiting', 'token', 'started_at', 'worker', 'key', 'unique_key', 'error', 'label'})
if not f then return redis.error_reply('NOT_FOUND ' .. id) end
if f.state ~= 'RUNNING' or f.token ~= token or badf.token then
  if not (f.state == 'SUCCESS' and f.token == token) then redis.pcall('HINCRBY', metrics, 'late', 1) end
  return redis.error_reply('LEASE_LOST ' .. id)
end

if why then  -- (failed is checked only when the record goes there)
  corrupt = corrupt_queue({failed, 'zset'}, stats, {})
  if corrupt then return redis.error_reply(corrupt) end
end

local now, now_s = clock_ms()
-- ZREM first: Redis refuses a memory-growing command at maxmemory only while a script has
-- written nothing yet, so a completion (which frees a lease) still lands on a full Redis.
local _, wrong = call_typed('ZREM', running, id)
if wrong then return redis.error_reply('CORRUPT ' .. running .. ' is not a zset') end
snapshot_series(stats, now, seen)
if why then
  quarantine(id, f, why, badf, now, failed, stats, events)
  return redis.error_reply('MALFORMED ' .. id .. ' ' .. why)
end
redis.call('HSET', task_key(id), 'state', 'SUCCESS', 'result', result, 'completed_at', now_s)
redis.call('HINCRBY', stats, 'succeeded', '1')
count_run(stats, f.started_at, now)
keep_error_as_history(task_key(id), f.error)
release_unique(id, f.unique_key)
retire(done, id, now, tonumber(ARGV[7]), f.key, now_s)
notify_final(id, 'SUCCESS', f.waiting)
local counts = {}
tally_outcome(counts, f, 'SUCCESS', now, true)
add_counts(metrics, counts)
emit(events, 'event', 'succeeded', 'task', id, 'name', f.name, 'worker', f.worker,
     'runtime_ms', now - (tonumber(f.started_at) or now))
return now
