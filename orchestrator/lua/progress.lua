--[[
  progress: a RUNNING task reports how far it got; only the holder of the current lease may.

  KEYS[1] events stream
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id          ARGV[5]  token     the lease token from claim
  ARGV[6]  fraction    a decimal number from 0 to 1 ('0.42', '1.0', '1e-05')
  ARGV[7]  data        JSON ('null' when none), at most ARGV[8] bytes
  ARGV[8]  max_bytes   the size limit of data

  Returns the time of the report (ms). The record's progress (the fraction, as sent),
  progress_data and progress_at are set. They are kept through a retry (nothing else
  clears them): the next attempt overwrites them when it reports.
  Errors (nothing changed): NOT_FOUND <id> (no record, or not a hash); LEASE_LOST <id> when
  the task is not RUNNING under this token (a zombie: reaped, released, cancelled, finished
  or claimed again; unlike complete it counts nothing as late); INVALID <what>;
  TOO_LARGE <bytes>; CORRUPT <key> <what> (the events key of another type).
  Other fields of a record that do not read are complete's and fail's to find: progress
  writes only its own three.
  Events: progress (task, fraction, data).
]]
local bad = bad_call(1, 8)
if bad then return redis.error_reply(bad) end
local events = KEYS[1]
local id, token, fraction, data = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local p = #fraction <= 32 and fraction:find('^[0-9.eE+-]+$') and tonumber(fraction)
if not p or p ~= p or p < 0 or p > 1 then
  return redis.error_reply('INVALID fraction ' .. quote(fraction) .. ' is not a number from 0 to 1')
end
if not is_uint(ARGV[8]) then return redis.error_reply('INVALID max_bytes') end
if #data > tonumber(ARGV[8]) then return redis.error_reply('TOO_LARGE ' .. #data) end
if not pcall(cjson.decode, data) then return redis.error_reply('INVALID data is not JSON') end
local corrupt = corrupt_queue({events, 'stream'}, nil, {})
if corrupt then return redis.error_reply(corrupt) end
local f, _, badf = read_task(id, {'token'})
if not f then return redis.error_reply('NOT_FOUND ' .. id) end
if f.state ~= 'RUNNING' or f.token ~= token or token == '' or badf.token then
  return redis.error_reply('LEASE_LOST ' .. id)
end
local now = now_ms()
redis.call('HSET', task_key(id), 'progress', fraction, 'progress_data', data, 'progress_at', now)
emit(events, 'event', 'progress', 'task', id, 'fraction', fraction, 'data', data)
return now
