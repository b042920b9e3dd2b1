--[[
  Shared helpers, prepended to every script by transitions.py (so each script is
  still one self-contained EVALSHA): only the definitions the script uses, directly or
  through another, in this file's order (luasource.py). So every top-level statement is
  a definition, `local function name(...)` closing with `end` at column 0 or
  `local NAME = ...`, its comment lines right above it. Defines nothing that touches a key by name:
  per-task keys are built from BASE = ARGV[1], the queue's key prefix ("orch:{Q}:").

  Every script receives the same first three arguments:
    ARGV[1]  base         queue key prefix, e.g. "orch:{default}:"
    ARGV[2]  offset_ms    added to Redis TIME; 0 in production, tests may shift the clock
    ARGV[3]  maxlen       approximate cap of the event stream; 0 writes no events
]]
local MAX_INT = 9007199254740991  -- 2^53 - 1: larger numbers are not exact in Lua or in Redis

-- Canonical decimal integers only ('-12', '0', '42'): tonumber() also takes '1e1', '0x10',
-- ' 10', '10.0' and '010', which a script would then store raw. A Lua number passes when whole.
local function is_int(s)
  if type(s) ~= 'string' then
    return type(s) == 'number' and s % 1 == 0 and s >= -MAX_INT and s <= MAX_INT  -- (nan fails)
  end
  if #s > 17 or not (s == '0' or string.find(s, '^%-?[1-9]%d*$')) then return false end
  local n = tonumber(s)
  return n >= -MAX_INT and n <= MAX_INT
end

-- redis.call, except that a key of the wrong type answers false, true instead of failing
-- the script (a record someone overwrote with a string is not ours to trip on). Any other
-- error (an ACL refusal, OOM) still fails the script. (tostring: fakeredis hands the
-- error's text over as a Python string, which has no :find; Redis's is a Lua string already.)
local function call_typed(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    if tostring(reply.err):find('WRONGTYPE', 1, true) then return false, true end
    error(reply)
  end
  return reply
end

local BASE = ARGV[1]
local OFFSET = tonumber(ARGV[2]) or 0
local MAXLEN = tonumber(ARGV[3]) or 0

-- Every script calls this first: the common arguments, checked before anything is written.
local function common_args_ok()
  return BASE ~= nil and BASE ~= '' and is_int(ARGV[2]) and is_int(ARGV[3]) and MAXLEN >= 0  -- (MAXLEN: ARGV[3] read)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + OFFSET
end

local function task_key(id)
  return BASE .. 'task:' .. id
end

-- A task ended (SUCCESS, FAILED, CANCELLED) or its record was deleted (DELETED): tell
-- whoever waits for it (TaskHandle.result) on its shard channel BASE .. 'finished:' .. id
-- (QueueKeys.finished; a channel, not a key), if anyone said so: a waiter sets the
-- record's field waiting (watch.lua) after subscribing. waiting: that field as the caller
-- read it ('0' or absent: nobody waits, nothing is sent; nil, not read: sent). So a task
-- nobody waits for costs nothing here. SPUBLISH: on Redis Cluster the message stays on
-- the queue's shard. Best effort (pcall): a user the ACL denies the channel still ends
-- the task, and waiters look again now and then in case a message is lost.
local function notify_final(id, state, waiting)
  if waiting ~= '0' then redis.pcall('SPUBLISH', BASE .. 'finished:' .. id, state) end
end

-- Integers as exact decimal strings (tostring() would print 1e+13 for big ones).
local function int(n)
  return string.format('%.0f', n)
end

-- Redis TIME in ms (plus OFFSET) as a number and as its decimal string. redis.call prints
-- each number it is handed (snprintf, about a third of a small command's cost), so a script
-- that writes the time more than once writes the string; without OFFSET the string is
-- TIME's own digits, seconds then the first three of the zero-padded microseconds.
local function clock_ms()
  local t = redis.call('TIME')
  if OFFSET == 0 then
    local s = t[1] .. string.sub('00000' .. t[2], -6, -4)
    return tonumber(s), s
  end
  local n = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + OFFSET
  return n, int(n)
end

-- (ARGV[3], not MAXLEN: the canonical decimal common_args_ok checked, so Redis prints no number)
local function emit(events_key, ...)
  if MAXLEN > 0 then
    redis.call('XADD', events_key, 'MAXLEN', '~', ARGV[3], '*', ...)
  end
end

-- Order in the pending set: priority first, then enqueue sequence (FIFO).
local PRIORITY_SPAN = 10000000000000  -- 1e13 sequence numbers per priority level
local function pending_score(stats_key, priority)
  local seq = redis.call('HINCRBY', stats_key, 'seq', '1')
  return priority * PRIORITY_SPAN + seq
end

-- (enqueue checks 6 numbers per task with it: one tonumber and one string.find, no calls)
local function is_uint(s, max)
  if type(s) ~= 'string' then return is_int(s) and s >= 0 and s <= (max or MAX_INT) end
  if #s > 16 or not (s == '0' or string.find(s, '^[1-9]%d*$')) then return false end
  return tonumber(s) <= (max or MAX_INT)  -- (MAX_INT when max is nil)
end

-- The idempotency entry of a task, when it still names the task: 'key:<key>' (field key,
-- kept as long as the record) or 'unique:<unique_key>' (field unique_key, kept while the
-- task is unfinished). Else false; an entry that is not a string (written by hand) names nobody.
-- name: the field's value when the caller has read it already (saves the HGET), else nil.
local function own_entry(id, field, prefix, name)
  if name == nil then name = call_typed('HGET', task_key(id), field) end
  if name and name ~= '' then
    local entry = BASE .. prefix .. name
    if call_typed('GET', entry) == id then return entry end
  end
  return false
end

-- A task reached a final state: its unique key is free again. (Its key entry stays as
-- long as the record: retire gives it the record's expiry.) unique_key: as own_entry's name.
local function release_unique(id, unique_key)
  local ukey = own_entry(id, 'unique_key', 'unique:', unique_key)
  if ukey then redis.call('DEL', ukey) end
end

-- Keep a finished record for ttl_ms, its key entry with it (one absolute expiry time for
-- both), and trim that index (done or cancelled) of what has expired: on about one call in 16 (by the
-- clock's last bits), at most 64 entries, so the cost stays bounded and small while
-- trimming outpaces the finishing. key: the record's key field, as own_entry's name.
-- now_s: now as a string (clock_ms's second value) when the caller has it, else nil.
local function retire(done_key, id, now, ttl_ms, key, now_s)
  redis.call('ZADD', done_key, now_s or now, id)
  if ttl_ms > 0 then
    local at = now - OFFSET + ttl_ms  -- on Redis's own clock (OFFSET only shifts the tests' one)
    redis.call('PEXPIREAT', task_key(id), at)
    local kkey = own_entry(id, 'key', 'key:', key)
    if kkey then redis.call('PEXPIREAT', kkey, at) end
    local old = {}
    if now % 16 == 0 then
      old = redis.call('ZRANGE', done_key, '-inf', now - ttl_ms, 'BYSCORE', 'LIMIT', 0, 64)
    end
    if #old > 0 then
      redis.call('ZREM', done_key, unpack(old))
    end
  end
end

-- An error JSON {type, message, traceback} as one line for an attempt's history: 'Type:
-- first line of the message', at most 200 bytes (cut on a UTF-8 boundary); '' for no error.
-- Only what comes before the traceback is decoded (the worker writes it last; ',"traceback":'
-- cannot sit inside a JSON string, whose quotes are escaped): a long traceback costs nothing.
local function error_line(err)
  if not err or err == '' then return '' end
  local cut = err:find(',"traceback":', 1, true)
  local ok, e = pcall(cjson.decode, cut and (err:sub(1, cut - 1) .. '}') or err)
  if not ok or type(e) ~= 'table' then return 'error' end
  local kind = type(e.type) == 'string' and e.type or 'Error'
  local message = type(e.message) == 'string' and e.message:match('^[^\r\n]*') or ''
  local line = message ~= '' and (kind .. ': ' .. message) or kind
  if #line > 200 then
    local at = 200
    while at > 0 and line:byte(at + 1) >= 0x80 and line:byte(at + 1) < 0xC0 do at = at - 1 end
    line = line:sub(1, at)
  end
  return line
end

-- Text as a JSON string whose braces are escaped too (\u007b, \u007d), so that '},{' in a
-- history only ever separates two attempts.
local HISTORY_BRACES = {['{'] = '\\u007b', ['}'] = '\\u007d'}
local function history_text(s)
  if not s:find('[%c"\\{}]') then return '"' .. s .. '"' end  -- (most: nothing to escape)
  return (cjson.encode(s):gsub('[{}]', HISTORY_BRACES))
end

-- The record's attempt history (field history, a JSON list, records.Attempt) with the attempt
-- that ended now appended, the last 10 kept: the JSON to write. Only attempts the record's
-- own fields no longer tell are kept there (retried, released, cancelled, and a failed one
-- an operator retries): a SUCCESS or FAILED record's last attempt is its worker, token,
-- started_at, completed_at and error (records.decode_history adds it), so the common
-- success writes no history and its record stays small (a listpack: values of 64 bytes at most). Built and trimmed as text, no
-- decoding: the attempts are separated by '},{' (history_text). f: the caller's read_task of
-- worker, token, started_at (token and started_at: digits or '') and history; a history that
-- is not one this function wrote ('[{...}]') starts afresh.
local function with_attempt(f, now, outcome, line)
  local started = f.started_at ~= '' and f.started_at or 'null'
  local token = f.token ~= '' and ('"' .. f.token .. '"') or 'null'
  local entry = '{"worker":' .. history_text(f.worker or '') .. ',"token":' .. token .. ',"started_at":' .. started
    .. ',"ended_at":' .. int(now) .. ',"outcome":"' .. outcome .. '","error":' .. history_text(line) .. '}'
  local old = f.history
  if not old or old:sub(1, 2) ~= '[{' or old:sub(-2) ~= '}]' then return '[' .. entry .. ']' end
  local seps, at = {}, 1
  while true do
    local i = old:find('},{', at, true)
    if not i then break end
    seps[#seps + 1] = i
    at = i + 3
  end
  local first = #seps >= 9 and seps[#seps - 8] + 2 or 2  -- where the last 9 attempts begin
  return '[' .. old:sub(first, -2) .. ',' .. entry .. ']'
end

-- An attempt of a RUNNING task ended in error (a raised exception, a timeout or an
-- expired lease). Retry with exponential backoff and jitter while attempts remain,
-- else move it to the dead-letter set. Returns the new state and its run_at (or '').
-- f: the caller's read_task of attempts, max_retries, backoff_ms, backoff_max_ms, jitter
-- and unique_key, and what with_attempt reads (checked there; absent fields at their defaults).
-- line: the error as the attempt's history shows it (nil: error_line(err)).
local function settle_failure(id, f, now, err, allow_retry, retrying_key, failed_key, stats_key, line)
  local tkey = task_key(id)
  local f_backoff, f_backoff_max, f_jitter = f.backoff_ms, f.backoff_max_ms, f.jitter
  local attempts = tonumber(f.attempts) or 0
  local max_retries = tonumber(f.max_retries) or 0
  if allow_retry and attempts <= max_retries then
    -- Finite and bounded before any write: the exponent is capped (0 * 2^1024 would be NaN,
    -- 2^1024 alone inf) and the delay never exceeds backoff_max_ms (at most MAX_INT).
    local backoff = tonumber(f_backoff) or 0
    local delay = 0
    if backoff > 0 then delay = backoff * 2 ^ math.min(math.max(attempts - 1, 0), 60) end
    local cap = tonumber(f_backoff_max) or 0
    if delay > cap then delay = cap end
    if f_jitter ~= '0' then delay = delay * (0.5 + math.random() * 0.5) end
    local run_at = int(now + math.floor(delay))
    redis.call('HSET', tkey, 'state', 'RETRYING', 'error', err, 'run_at', run_at, 'worker', '',
               'history', with_attempt(f, now, 'retried', line or error_line(err)))
    redis.call('ZADD', retrying_key, run_at, id)
    redis.call('HINCRBY', stats_key, 'retried', '1')
    return 'RETRYING', run_at
  end
  redis.call('HSET', tkey, 'state', 'FAILED', 'error', err, 'completed_at', now)  -- worker: who ran it
  redis.call('ZADD', failed_key, now, id)
  redis.call('HINCRBY', stats_key, 'failed', '1')
  release_unique(id, f.unique_key)
  notify_final(id, 'FAILED', f.waiting)
  return 'FAILED', ''
end

-- End a RUNNING task as CANCELLED (its cancel request was honoured): into cancelled, kept ttl_ms.
-- f: the caller's read_task of key, unique_key (each read here when absent) and what
-- with_attempt reads. line: as settle_failure's.
local function finish_cancelled(id, now, err, cancelled_key, stats_key, ttl_ms, f, line)
  redis.call('HSET', task_key(id), 'state', 'CANCELLED', 'error', err, 'completed_at', now, 'worker', '',
             'history', with_attempt(f, now, 'cancelled', line or error_line(err)))
  redis.call('HINCRBY', stats_key, 'cancelled', '1')
  release_unique(id, f.unique_key)
  retire(cancelled_key, id, now, ttl_ms, f.key)
  notify_final(id, 'CANCELLED', f.waiting)
end

-- Runtime bookkeeping of one finished attempt.
local function count_run(stats_key, started_at, now)
  local started = tonumber(started_at)
  if started then
    redis.call('HINCRBY', stats_key, 'runs', '1')
    redis.call('HINCRBY', stats_key, 'runtime_ms', now - started)
  end
end

-- len: the list's LLEN when the caller has read it in this call, else nil.
local function wake_one(wake_key, len)
  if (len or redis.call('LLEN', wake_key)) == 0 then
    redis.call('RPUSH', wake_key, '1')
  end
end

-- n tasks became PENDING: count them under `counter` and wake an idle worker. wake_len: as wake_one's len.
local function made_ready(stats_key, counter, n, wake_key, wake_len)
  if n > 0 then
    redis.call('HINCRBY', stats_key, counter, n == 1 and '1' or n)  -- ('1': as add_counts)
    wake_one(wake_key, wake_len)
  end
end

-- ------------------------------------------------------------------ calls and records
-- RECORD_KIND, RECORD_DEFAULT, RECORD_REQUIRED, with_required and TASK_STATES are
-- models.RECORD and models.TaskState, rendered ahead of this library by transitions.py.

-- Every script calls this first: exactly nkeys KEYS, each under this queue's BASE (so
-- under its hash tag), nargs ARGV (at least nargs when more is true) and valid common
-- arguments. Returns the INVALID error's text, or nil when the call is well formed.
local function bad_call(nkeys, nargs, more)
  if #KEYS ~= nkeys then return 'INVALID ' .. nkeys .. ' KEYS expected, got ' .. #KEYS end
  if #ARGV < nargs or (#ARGV > nargs and not more) then
    return 'INVALID ' .. nargs .. ' ARGV expected, got ' .. #ARGV
  end
  if not common_args_ok() then return 'INVALID base, offset_ms or maxlen' end
  for i = 1, nkeys do
    if KEYS[i]:find(BASE, 1, true) ~= 1 then return 'INVALID KEYS[' .. i .. '] is not under the base' end
  end
  return nil
end

-- Strict UTF-8, as Python decodes it (no overlong forms, no surrogates). ASCII: one find
-- (anchored, one negated range: three times as fast as looking for a byte over 127).
local function is_utf8(s)
  if s:find('^[^\128-\255]*$') then return true end
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2 or (c >= 0xE0 and c <= 0xEF) and 3
      or (c >= 0xF0 and c <= 0xF4) and 4 or 0
    if len == 0 then return false end
    for j = i + 1, i + len - 1 do
      local d = s:byte(j)
      if not d or d < 0x80 or d > 0xBF then return false end
    end
    local d = s:byte(i + 1)
    if (c == 0xE0 and d < 0xA0) or (c == 0xED and d > 0x9F) or (c == 0xF0 and d < 0x90) or (c == 0xF4 and d > 0x8F) then
      return false
    end
    i = i + len
  end
  return true
end

-- Why a stored value does not read as its kind (models.field_problem), or nil.
local function field_problem(kind, v)
  if kind == 'int' or (kind == 'time' and v ~= '') then  -- (checked in the order of how often they come)
    if #v > 16 or not v:find('^%d+$') or tonumber(v) > MAX_INT then
      return is_utf8(v) and 'is not an integer' or 'is not UTF-8'
    end
  elseif kind == 'name' or kind == 'text' then
    if not is_utf8(v) then return 'is not UTF-8' end
    if v == '' and kind == 'name' then return 'is empty' end
  elseif kind == 'state' then
    if not TASK_STATES[v] then return is_utf8(v) and 'is not a task state' or 'is not UTF-8' end
  elseif kind == 'priority' then
    if #v ~= 1 or not v:find('^%d$') then return is_utf8(v) and 'is not a priority (0-9)' or 'is not UTF-8' end
  elseif kind == 'bool' then
    if v ~= '0' and v ~= '1' then return is_utf8(v) and 'is not 0 or 1' or 'is not UTF-8' end
  end
  return nil  -- json: decoded, and checked, by the worker and Task.from_redis
end

-- A stored value as an error may show it: printable ASCII, 40 bytes at most (models._quote).
local function quote(v)
  local shown = v:sub(1, 40):gsub('[^\32-\38\40-\126]', function(c) return string.format('\\x%02X', c:byte()) end)
  return "'" .. shown .. "'" .. (#v > 40 and '...' or '')
end

-- Read a task record's fields by name (the required ones always), each checked against
-- RECORD. Returns rec, why, bad:
--   rec nil            nothing to handle: no record, not a hash, or none of the required
--                      fields (why says which); callers drop the id from their index
--   why nil            rec[name] holds every field asked for, absent ones at their default
--   why a string       the record is malformed: why names each problem, bad each field
--                      that did not read (rec holds its default); move it aside (quarantine)
-- Cost (it runs per task): one HMGET, then one pass that checks the plainly fine values
-- (integers of at most 15 digits, ASCII text) with one anchored find each and allocates
-- nothing but rec; only a record with a doubtful value goes through field_problem.
local function read_task(id, fields)
  local nreq = #RECORD_REQUIRED
  local n = nreq + #fields
  local values, wrong = call_typed('HMGET', task_key(id), with_required(unpack(fields)))
  if wrong then return nil, 'not a hash' end
  local rec, present, fine = {}, 0, true
  for i = 1, n do
    local name = i <= nreq and RECORD_REQUIRED[i] or fields[i - nreq]
    local v, kind = values[i], RECORD_KIND[name]
    if not kind then error('read_task: no field ' .. name .. ' in RECORD_KIND (transitions.build)') end
    if v then
      if i <= nreq then present = present + 1 end
      if not fine then  -- (looked at again below)
      elseif kind == 'int' or kind == 'time' then
        if not v:find('^%d*$') or (v == '' and kind == 'int') or (#v > 15 and (#v > 16 or tonumber(v) > MAX_INT)) then
          fine = false  -- (16 digits: a lease token, Redis TIME in microseconds)
        end
      elseif kind == 'name' or kind == 'text' then
        if not v:find('^[^\128-\255]*$') or (v == '' and kind == 'name') then fine = false end
      elseif kind == 'state' then
        if not TASK_STATES[v] then fine = false end
      elseif kind == 'priority' then
        if #v ~= 1 or not v:find('^%d$') then fine = false end
      elseif kind == 'bool' then
        if v ~= '0' and v ~= '1' then fine = false end
      end
      rec[name] = v
    else
      rec[name] = RECORD_DEFAULT[name]
      if rec[name] == nil then fine = false end
    end
  end
  if present == 0 then return nil, 'no record' end
  if fine then return rec, nil, {} end
  local problems, bad = {}, {}
  for i = 1, n do
    local name, v = i <= nreq and RECORD_REQUIRED[i] or fields[i - nreq], values[i]
    local problem = v and field_problem(RECORD_KIND[name], v)
    if not v and not RECORD_DEFAULT[name] then
      problems[#problems + 1] = 'field ' .. name .. ' is missing'
      bad[name] = true
    elseif problem then
      problems[#problems + 1] = 'field ' .. name .. ' ' .. quote(v) .. ' ' .. problem
      bad[name] = true
      rec[name] = RECORD_DEFAULT[name]
    end
  end
  if #problems > 0 then return rec, table.concat(problems, '; '), bad end
  return rec, nil, bad
end

-- A record that is not there to handle (read_task gave no rec) leaves the index alone:
-- the caller removes the id; this says so in the event stream. Event: dropped.
local function dropped(events_key, id, why)
  emit(events_key, 'event', 'dropped', 'task', id, 'reason', why)
end

-- Move a malformed record aside, alone: FAILED with a MalformedRecord error saying why,
-- each field that did not read reset to its default (the error quotes what it held), into
-- the failed index; its idempotency key is released. The caller removes the id from the
-- index it was in. Event: malformed.
local function quarantine(id, rec, why, bad, now, failed_key, stats_key, events_key)
  local set = {}
  for name in pairs(bad) do
    if RECORD_DEFAULT[name] then set[#set + 1] = name; set[#set + 1] = RECORD_DEFAULT[name] end
  end
  local err = cjson.encode({type = 'MalformedRecord', message = 'task record is malformed: ' .. why, traceback = ''})
  for _, v in ipairs({'state', 'FAILED', 'error', err, 'completed_at', int(now), 'worker', ''}) do set[#set + 1] = v end
  redis.call('HSET', task_key(id), unpack(set))
  redis.call('ZADD', failed_key, now, id)
  redis.call('HINCRBY', stats_key, 'failed', 1)
  redis.call('HINCRBY', stats_key, 'malformed', 1)
  release_unique(id)  -- (a unique_key field that did not read was reset to '' above)
  notify_final(id, 'FAILED', rec.waiting)
  emit(events_key, 'event', 'malformed', 'task', id, 'from', rec.state or '?', 'error', why)
end

-- ------------------------------------------------------------------ idempotency entries

-- A SUCCESS record shows no error: an earlier attempt's error (err, as read) is kept as last_error.
local function keep_error_as_history(tkey, err)
  if err and err ~= '' then
    redis.call('HSET', tkey, 'last_error', err, 'error', '')
  end
end

-- The task a 'key:' entry names while that task's record exists, or nil (an entry that
-- is not a string, written by hand, names nobody).
local function record_holder(kkey)
  local id = call_typed('GET', kkey)
  if type(id) == 'string' and redis.call('EXISTS', task_key(id)) == 1 then return id end
end

-- The task a 'unique:' entry names while that task is unfinished, or nil.
local function unfinished_holder(ukey)
  local id = call_typed('GET', ukey)
  if type(id) ~= 'string' then return nil end
  local state = call_typed('HGET', task_key(id), 'state')
  if type(state) == 'string' and state ~= 'SUCCESS' and state ~= 'FAILED' and state ~= 'CANCELLED' then
    return id
  end
end

-- An operator retried a FAILED task: it takes its key entry back unless another record
-- holds it, and its unique key unless another unfinished task holds it.
local function retake_keys(id)
  local f = redis.call('HMGET', task_key(id), 'key', 'unique_key')
  if f[1] and f[1] ~= '' and not record_holder(BASE .. 'key:' .. f[1]) then
    redis.call('SET', BASE .. 'key:' .. f[1], id)
  end
  if f[2] and f[2] ~= '' and not unfinished_holder(BASE .. 'unique:' .. f[2]) then
    redis.call('SET', BASE .. 'unique:' .. f[2], id)
  end
end

-- A task's record is deleted (purge): its idempotency entries go with it.
local function drop_keys(id)
  local kkey, ukey = own_entry(id, 'key', 'key:'), own_entry(id, 'unique_key', 'unique:')
  if kkey then redis.call('DEL', kkey) end
  if ukey then redis.call('DEL', ukey) end
end

-- Queue keys are as untrusted as records. Before its first write a script checks that each
-- key it may write is absent or of its type (typed: key, type, key, type, ...; an events
-- stream only when events are written) and that the stats hash is a hash whose counters
-- the call may bump read as integers (seq: a sequence number). Returns the refusal,
-- CORRUPT <key> <what>, or nil and the stats field `also` (read in the same HMGET, not
-- checked; false when absent). Cost: one TYPE per key and one HMGET.
local function corrupt_queue(typed, stats_key, counters, also)
  for i = 1, #typed, 2 do
    if typed[i + 1] ~= 'stream' or MAXLEN > 0 then
      local kind = redis.call('TYPE', typed[i]).ok
      if kind ~= 'none' and kind ~= typed[i + 1] then
        return 'CORRUPT ' .. typed[i] .. ' is a ' .. kind .. ', not a ' .. typed[i + 1]
      end
    end
  end
  if #counters == 0 then return nil end
  local values, wrong, off
  if also then
    values, wrong = call_typed('HMGET', stats_key, also, unpack(counters))
    off = 1
  else
    values, wrong = call_typed('HMGET', stats_key, unpack(counters))
    off = 0
  end
  if wrong then return 'CORRUPT ' .. stats_key .. ' is not a hash' end
  -- Plainly fine: 1 to 15 digits (12 for seq), no leading zero, one anchored find each
  -- and no allocation; anything else ('0' too) is looked at by is_int below.
  local fine = true
  for i = 1, #counters do
    local v = values[i + off]
    if v and (#v > 15 or not v:find('^[1-9]%d*$') or (#v > 12 and counters[i] == 'seq')) then
      fine = false
      break
    end
  end
  if fine then return nil, off == 1 and values[1] end
  for i, name in ipairs(counters) do
    local v = values[i + off]
    if v and not (is_int(v) and (name ~= 'seq' or is_uint(v, PRIORITY_SPAN - 1000000))) then
      return 'CORRUPT ' .. stats_key .. ' ' .. name .. ' ' .. quote(v) .. ' is not a count'
    end
  end
  return nil, off == 1 and values[1]
end

-- ------------------------------------------------------------------ metrics
-- Counters and histogram buckets in the queue's metrics hash, and per-minute series hashes
-- (field names: metrics_records.py). Metrics never stop a transition: every metrics write is
-- a pcall, so a metrics key spoiled by hand (or an ACL that predates them) costs the count,
-- never the task. Callers aggregate per call: one HINCRBY per distinct field.

-- The outcome a task's new state counts as.
local OUTCOME_OF = {SUCCESS = 'succeeded', RETRYING = 'retried', FAILED = 'failed', CANCELLED = 'cancelled'}

-- Count n tasks of a name enqueued, under its label, which it returns: the name while the
-- queue's names set has room (MAX_NAMES), else OTHER_LABEL. A name counted before costs one
-- HINCRBY (a counter exists only for an admitted name); a new one is admitted (SISMEMBER,
-- SCARD, SADD) or its fresh counter is taken back (HDEL) and counted as OTHER_LABEL.
local function count_enqueued(metrics_key, names_key, name, n)
  local field = 'enqueued:' .. name
  local total = redis.pcall('HINCRBY', metrics_key, field, n == 1 and '1' or n)  -- ('1': as add_counts)
  if type(total) == 'number' and total ~= n then return name end
  if redis.pcall('SISMEMBER', names_key, name) == 1 then return name end
  local card = redis.pcall('SCARD', names_key)
  if type(card) == 'number' and card < MAX_NAMES and redis.pcall('SADD', names_key, name) == 1 then return name end
  if type(total) == 'number' then
    redis.pcall('HDEL', metrics_key, field)
    redis.pcall('HINCRBY', metrics_key, 'enqueued:' .. OTHER_LABEL, n)
  end
  return OTHER_LABEL
end

-- The upper bound of the bucket ms falls in (bounds ascending), 'inf' past the last.
local function bucket_of(bounds, ms)
  for _, le in ipairs(bounds) do
    if ms <= le then return le end
  end
  return 'inf'
end

-- Add n to counts[field] (a table of counts to write in one go).
local function tally(counts, field, n)
  counts[field] = (counts[field] or 0) + n
end

-- One ended attempt into counts (for the metrics hash) under its label (f.label, set by
-- enqueue when the names were full, else f.name). Timed (ran: complete, fail: the worker
-- ran it from f.started_at), it counts in the run-time bucket of its outcome,
-- run:<le>:<outcome>:<label>, and run_ms:<label>; untimed (reap, cancel, release), as
-- <outcome>:<label>. Readers add both up per outcome.
local function tally_outcome(counts, f, state, now, ran)
  local label = f.label ~= '' and f.label or f.name
  local started = ran and tonumber(f.started_at)
  if started then
    local ms = math.max(now - started, 0)
    tally(counts, 'run:' .. bucket_of(RUN_BUCKETS, ms) .. ':' .. OUTCOME_OF[state] .. ':' .. label, 1)
    tally(counts, 'run_ms:' .. label, ms)
  else
    tally(counts, OUTCOME_OF[state] .. ':' .. label, 1)
  end
end

-- Write counts into the metrics hash: one HINCRBY per field (a zero is skipped; a 1, the
-- most common, as a string: Redis need not print it).
local function add_counts(metrics_key, counts)
  for field, n in pairs(counts) do
    if n ~= 0 then redis.pcall('HINCRBY', metrics_key, field, n == 1 and '1' or n) end
  end
end

-- The stats counters a minute's series keeps (metrics_records.SERIES_FIELDS).
local SERIES_FIELDS = {'enqueued', 'succeeded', 'failed', 'retried', 'reaped', 'runs', 'runtime_ms'}

-- Per-minute series at one HGET a call (none where the caller read it already): the first
-- call of a minute that counts (enqueue, complete, fail, reap) copies the stats counters, as they stand before it counts, into
-- BASE .. 'series:<minute ms>', expiring SERIES_TTL_MS after the minute began, and notes
-- the minute in stats (series_minute). A minute's figures are the next snapshot (or the
-- counters now) minus its own: readers subtract. Call it after the script's first write
-- (a Redis at maxmemory refuses a growing write only before it) and before it counts.
-- seen: series_minute as the caller read it (corrupt_queue's also: no HGET), nil to read it.
local function snapshot_series(stats_key, now, seen)
  local minute = now - now % 60000
  if seen == nil then seen = redis.call('HGET', stats_key, 'series_minute') end
  seen = tonumber(seen)
  if seen and seen >= minute then return end
  local key = BASE .. 'series:' .. int(minute)
  local values = {}
  for _, name in ipairs(SERIES_FIELDS) do
    values[#values + 1] = name
    values[#values + 1] = redis.call('HGET', stats_key, name) or '0'
  end
  redis.pcall('HSET', key, unpack(values))
  redis.pcall('PEXPIREAT', key, int(minute - OFFSET + SERIES_TTL_MS))
  redis.call('HSET', stats_key, 'series_minute', int(minute))
end
