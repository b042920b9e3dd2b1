--[[
  fail: an attempt of a RUNNING task ended in error, or was cancelled by its worker.

  KEYS[1] running zset   KEYS[2] retrying zset   KEYS[3] failed zset   KEYS[4] cancelled zset
  KEYS[5] stats hash     KEYS[6] events stream   KEYS[7] metrics hash (best effort)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id        ARGV[5]  token    the lease token from claim
  ARGV[6]  error     JSON {type, message, traceback}
  ARGV[7]  seed      integer seeding the backoff jitter
  ARGV[8]  mode      retry     retry with backoff while attempts remain, else FAILED
                               (CANCELLED instead when a cancel was requested)
                     fatal     FAILED at once, attempts left or not
                     cancelled CANCELLED (the worker stopped it on a cancel request)
  ARGV[9]  ttl_ms    retention of a cancelled record; 0 keeps it

  Returns {state, run_at}: RETRYING with the retry time, FAILED or CANCELLED with ''.
  A retried or cancelled attempt joins the record's history (with the error's first line); a
  failed one is told by the record itself (records.decode_history).
  Errors (nothing changed): NOT_FOUND <id>; LEASE_LOST <id>; INVALID <what>; CORRUPT <key>
  <what> (a key it writes of another type, a counter not an integer).
  Error after a change: MALFORMED <id> <why>: the record (held under this token) is
  malformed and was moved aside instead (FAILED, MalformedRecord).
  Events: retrying, failed or cancelled, or malformed.
  Notifies: FAILED or CANCELLED on the channel finished:<id> when the task ends (notify_final).
  Metrics: run:<le>:<outcome>:<label> (retried, failed or cancelled: its run-time bucket) and
  run_ms:<label>; the minute's series snapshot when it is the minute's first. A LEASE_LOST
  refusal changes one thing, the metrics field late (+1), except when the record holds this
  token and this very error (this call, resent after its reply was lost).
]]
local bad = bad_call(7, 9)
if bad then return redis.error_reply(bad) end
local running, retrying, failed, cancelled, stats, events, metrics =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id, token, err, mode = ARGV[4], ARGV[5], ARGV[6], ARGV[8]
if not is_uint(ARGV[7]) or not is_uint(ARGV[9]) then return redis.error_reply('INVALID seed or ttl_ms') end
if mode ~= 'retry' and mode ~= 'fatal' and mode ~= 'cancelled' then
  return redis.error_reply('INVALID mode ' .. mode)
end
local corrupt, seen = corrupt_queue({retrying, 'zset', failed, 'zset', cancelled, 'zset', events, 'stream'},  -- (running: by the first write)
                                    stats, {'retried', 'failed', 'cancelled', 'runs', 'runtime_ms', 'malformed'}, 'series_minute')
if corrupt then return redis.error_reply(corrupt) end
-- (settle_failure is given attempts, max_retries, backoff_ms, backoff_max_ms, jitter and unique_key.)
local f, why, badf = read_task(id, {'waiting', 'token', 'started_at', 'worker', 'attempts', 'key', 'cancel_requested',
                                    'max_retries', 'backoff_ms', 'backoff_max_ms', 'jitter', 'unique_key', 'label',
                                    'history'})
if not f then return redis.error_reply('NOT_FOUND ' .. id) end
if f.state ~= 'RUNNING' or f.token ~= token or badf.token then
  if not (f.token == token and redis.call('HGET', task_key(id), 'error') == err) then
    redis.pcall('HINCRBY', metrics, 'late', 1)
  end
  return redis.error_reply('LEASE_LOST ' .. id)
end

math.randomseed(tonumber(ARGV[7]))
local now = now_ms()
local _, wrong = call_typed('ZREM', running, id)  -- the first write: nothing is written before a refusal
if wrong then return redis.error_reply('CORRUPT ' .. running .. ' is not a zset') end
snapshot_series(stats, now, seen)
if why then
  quarantine(id, f, why, badf, now, failed, stats, events)
  return redis.error_reply('MALFORMED ' .. id .. ' ' .. why)
end
count_run(stats, f.started_at, now)
local state, run_at
if mode == 'cancelled' or (mode == 'retry' and f.cancel_requested == '1') then  -- asked to cancel: no retry
  state, run_at = 'CANCELLED', ''
  finish_cancelled(id, now, err, cancelled, stats, tonumber(ARGV[9]), f)
else
  state, run_at = settle_failure(id, f, now, err, mode == 'retry', retrying, failed, stats)
end
local counts = {}
tally_outcome(counts, f, state, now, true)
add_counts(metrics, counts)
emit(events, 'event', string.lower(state), 'task', id, 'name', f.name, 'worker', f.worker,
     'attempt', f.attempts, 'run_at', run_at, 'error', err)
return {state, run_at}
