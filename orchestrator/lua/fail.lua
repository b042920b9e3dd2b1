--[[
  fail: an attempt of a RUNNING task ended in error, or was cancelled by its worker.

  KEYS[1] running zset   KEYS[2] scheduled zset   KEYS[3] failed zset   KEYS[4] done zset
  KEYS[5] stats hash     KEYS[6] events stream
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
  Errors (nothing changed): NOT_FOUND <id>; LEASE_LOST <id>; INVALID <what>.
  Events: retrying, failed or cancelled.
]]
if not common_args_ok() then return redis.error_reply('INVALID base, offset_ms or maxlen') end
local running, scheduled, failed, done, stats, events =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, token, err, mode = ARGV[4], ARGV[5], ARGV[6], ARGV[8]
if not is_uint(ARGV[7]) or not is_uint(ARGV[9]) then return redis.error_reply('INVALID seed or ttl_ms') end
if mode ~= 'retry' and mode ~= 'fatal' and mode ~= 'cancelled' then
  return redis.error_reply('INVALID mode ' .. mode)
end
local tkey = task_key(id)
local f = redis.call('HMGET', tkey, 'state', 'token', 'started_at', 'worker', 'name', 'attempts', 'key',
                     'cancel_requested')
if not f[1] then return redis.error_reply('NOT_FOUND ' .. id) end
if f[1] ~= 'RUNNING' or f[2] ~= token then return redis.error_reply('LEASE_LOST ' .. id) end

math.randomseed(tonumber(ARGV[7]))
local now = now_ms()
redis.call('ZREM', running, id)
count_run(stats, f[3], now)
local state, run_at
if mode == 'cancelled' or (mode == 'retry' and f[8] == '1') then  -- asked to cancel: no retry
  state, run_at = 'CANCELLED', ''
  finish_cancelled(id, now, err, f[7], done, stats, tonumber(ARGV[9]))
else
  state, run_at = settle_failure(id, now, err, mode == 'retry', scheduled, failed, stats)
end
emit(events, 'event', string.lower(state), 'task', id, 'name', f[5], 'worker', f[4],
     'attempt', f[6], 'run_at', run_at, 'error', err)
return {state, run_at}
