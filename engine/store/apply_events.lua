-- Join a batch of one experiment's events to their decisions, atomically.
--
-- KEYS[1] ledger hash (counters)   KEYS[2] reward stream   KEYS[3] pending zset
-- ARGV[1] now_ms  ARGV[2] window_ms  ARGV[3] stream maxlen  ARGV[4] max conversions per decision
-- ARGV[5] pending grace ms  ARGV[6] 1 when these events are retries from the pending zset
-- ARGV[7] prefix of decision keys (ends with the experiment's hash tag, so every decision key
--         lives in the same cluster slot as KEYS[1..3])
-- ARGV[8] the events, one JSON array: [[event_id, type, value, event_time_ms], ...]
-- (one packed argument instead of 4 per event: argument packing dominated the client's cost)
--
-- Returns one status per event: applied | duplicate | repeat | late | pending | unmatched
--   applied   first time this event_id is seen for this decision; rewards appended to the stream
--   duplicate this event_id was already applied, or is already waiting for its decision (a replay
--             or a client retry): nothing changes. Returned as duplicate_waiting in the second
--             case, so that the caller writes its payload again (the same bytes: it restores a
--             payload whose first write a crash lost); counted as duplicate:<type> either way
--   repeat    a distinct event the decision already had (second click/impression): recorded, no reward
--   late      more than the attribution window after the decision
--   pending   the decision is not known yet; the event waits in the pending zset (its raw
--             payload is stored by the caller under the same member); counted once per event
--             as waited:<type> in the ledger hash (how often consumption ran ahead of decisions)
--   unmatched still no decision after the grace period: the caller dead-letters it
local ledger, stream, pending = KEYS[1], KEYS[2], KEYS[3]
local now_ms, window_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxlen, max_conv, grace_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local retry = ARGV[6] == '1'
local counts, out = {}, {}

local function emit(d, record, kind, value, event_time)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'k', kind, 'val', value, 'et', event_time, 'r', record)
  counts['reward:' .. kind] = (counts['reward:' .. kind] or 0) + 1
end

local prefix = ARGV[7]
local events = cjson.decode(ARGV[8])
for i = 1, #events do
  local e = events[i]
  local event_id, kind, value, event_time = e[1], e[2], e[3], tonumber(e[4])
  local d = prefix .. e[5]
  local member = kind .. '\n' .. event_id
  local f = redis.call('HMGET', d, 't', 'imp', 'e:' .. event_id, 'r')
  local status
  local waiting_copy = false
  if not f[1] then
    local first = redis.call('ZSCORE', pending, member)
    if not first then
      redis.call('ZADD', pending, now_ms, member)
      counts['waited:' .. kind] = (counts['waited:' .. kind] or 0) + 1
      status = 'pending'
    elseif now_ms - tonumber(first) >= grace_ms then
      redis.call('ZREM', pending, member)
      status = 'unmatched'
    elseif retry then
      status = 'pending'
    else
      status = 'duplicate'
      waiting_copy = true
    end
  elseif f[3] then
    status = 'duplicate'
  elseif event_time - tonumber(f[1]) > window_ms then
    redis.call('HSET', d, 'e:' .. event_id, 'late')
    status = 'late'
  else
    status = 'applied'
    local imp = tonumber(f[2] or '0')
    local record = f[4]
    if kind == 'impression' then
      if imp == 0 then emit(d, record, 'impression', 0, event_time) end
      if imp == 1 then status = 'repeat' end
      redis.call('HSET', d, 'e:' .. event_id, kind, 'imp', 1)
    else
      -- a click or conversion implies the variant was shown: credit the trial once
      if imp == 0 then
        emit(d, record, 'impression', 0, event_time)
        redis.call('HSET', d, 'imp', 2)
      end
      redis.call('HSET', d, 'e:' .. event_id, kind)
      if kind == 'click' then
        if redis.call('HSETNX', d, 'clk', 1) == 1 then emit(d, record, 'click', 1, event_time) else status = 'repeat' end
      elseif redis.call('HINCRBY', d, 'nconv', 1) <= max_conv then
        emit(d, record, 'conversion', value, event_time)
      else
        status = 'repeat'
      end
    end
  end
  if retry and status ~= 'pending' then redis.call('ZREM', pending, member) end
  if status ~= 'pending' then
    local key = status .. ':' .. kind
    counts[key] = (counts[key] or 0) + 1
  end
  out[i] = waiting_copy and 'duplicate_waiting' or status
end
for key, n in pairs(counts) do redis.call('HINCRBY', ledger, key, n) end
return out
