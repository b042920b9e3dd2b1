--[[
  watch: someone waits for a task's end (TaskHandle.result, subscribed to the task's channel
  finished:<id> first): mark the record, so the script that ends the task publishes there
  (notify_final in _lib.lua; a task nobody watches is ended without a message).

  KEYS[1] the task's record, task:<id> under the base (it routes the call on Redis Cluster)
  ARGV[1..3]  base, offset_ms, maxlen (see _lib.lua)
  ARGV[4]  id

  Returns the task's state as its record says. An unfinished task's record gets waiting = 1
  (kept through retries, until the record goes); a final or malformed one is left alone
  (the caller reads it as it would any record).
  Errors (nothing changed): NOT_FOUND <id> (no record, or not a hash); INVALID <what>.
  Events: none.
]]
local bad = bad_call(1, 4)
if bad then return redis.error_reply(bad) end
local id = ARGV[4]
if KEYS[1] ~= task_key(id) then return redis.error_reply("INVALID KEYS[1] is not the task's record") end
local f, why = read_task(id, {'waiting'})
if not f then return redis.error_reply('NOT_FOUND ' .. id) end
local state = f.state or ''
if why or state == 'SUCCESS' or state == 'FAILED' or state == 'CANCELLED' or f.waiting == '1' then
  return state
end
redis.call('HSET', KEYS[1], 'waiting', '1')
return state
