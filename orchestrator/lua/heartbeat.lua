--[[
  heartbeat: renew a worker's registration and the leases of all its running tasks.

  KEYS[1] workers zset   KEYS[2] worker hash   KEYS[3] running zset
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  worker     the worker's id
  ARGV[5]  lease_ms   new deadline = now + lease_ms, for the worker and each lease;
                      0 deregisters the worker (clean shutdown) and renews nothing
  ARGV[6]  k          number of info fields that follow as 2k field, value strings
                      (host, pid, concurrency, running, load, version, started_at)
  then pairs: task id, lease token, for every task the worker runs

  Returns {lost, cancel, now}: ids whose lease the worker no longer holds (reaped,
  released, or given to another worker; or whose record is gone or malformed: the reaper
  moves it aside when its lease runs out) and ids with a cancel request.
  Errors (nothing changed): INVALID <what>; CORRUPT <key> <what> (a key of another type).
  Events: none.
]]
local bad = bad_call(3, 6, true)
if bad then return redis.error_reply(bad) end
local workers, whash, running = KEYS[1], KEYS[2], KEYS[3]
local worker, lease, k = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if worker == '' or not is_uint(ARGV[5]) or not is_uint(ARGV[6]) then
  return redis.error_reply('INVALID worker, lease_ms or k')
end
local first_pair = 7 + 2 * k
if first_pair > #ARGV + 1 or (#ARGV - first_pair + 1) % 2 ~= 0 then
  return redis.error_reply('INVALID id/token pairs')
end

local corrupt = corrupt_queue({workers, 'zset', whash, 'hash', running, 'zset'}, nil, {})
if corrupt then return redis.error_reply(corrupt) end
local now = now_ms()
if lease == 0 then
  redis.call('ZREM', workers, worker)
  redis.call('DEL', whash)
  return {{}, {}, now}
end

local deadline = now + lease
-- PEXPIRE first (again below, for a hash this call creates): Redis refuses a memory-growing
-- command at maxmemory only while a script has written nothing yet, so a beat still lands
-- on a full Redis and its leases do not lapse into duplicate runs (see complete.lua).
redis.call('PEXPIRE', whash, lease * 4)
local lost, cancel = {}, {}
for i = first_pair, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f, why = read_task(id, {'token', 'cancel_requested'})
  if f and not why and f.state == 'RUNNING' and f.token == token then
    redis.call('ZADD', running, 'XX', deadline, id)
    if f.cancel_requested == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
if k > 0 then
  redis.call('HSET', whash, unpack(ARGV, 7, 6 + 2 * k))
end
redis.call('HSET', whash, 'last_seen', now)
redis.call('PEXPIRE', whash, lease * 4)
redis.call('ZADD', workers, deadline, worker)
return {lost, cancel, now}
