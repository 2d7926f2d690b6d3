-- Join a batch of one experiment's events to their decisions, atomically.
--
-- KEYS[1] ledger hash (counters)   KEYS[2] reward stream   KEYS[3] pending zset
-- KEYS[3+i] decision hash of event i
-- ARGV[1] now_ms  ARGV[2] window_ms  ARGV[3] stream maxlen  ARGV[4] max conversions per decision
-- ARGV[5] pending grace ms
-- then 5 ARGV per event: event_id, type, value, event_time_ms, raw payload
--
-- Returns one status per event: applied | duplicate | repeat | late | pending | unmatched
--   applied   first time this event_id is seen for this decision; rewards appended to the stream
--   duplicate this event_id was already applied (a replay or a client retry): nothing changes
--   repeat    a distinct event the decision already had (second click/impression): recorded, no reward
--   late      more than the attribution window after the decision
--   pending   the decision is not known yet; the event waits in the pending zset
--   unmatched still no decision after the grace period: the caller dead-letters it
local ledger, stream, pending = KEYS[1], KEYS[2], KEYS[3]
local now_ms, window_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxlen, max_conv, grace_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}

local function emit(d, kind, value, event_time)
  local f = redis.call('HMGET', d, 'v', 'u', 't', 'p', 'a', 'm', 'x', 'id')
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
    'k', kind, 'val', value, 'et', event_time,
    'd', f[8], 'v', f[1], 'u', f[2], 't', f[3], 'p', f[4], 'a', f[5], 'm', f[6], 'x', f[7])
  redis.call('HINCRBY', ledger, 'reward:' .. kind, 1)
end

for i = 1, (#ARGV - 5) / 5 do
  local base = 5 + (i - 1) * 5
  local event_id, kind, value = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local event_time, raw = tonumber(ARGV[base + 4]), ARGV[base + 5]
  local d = KEYS[3 + i]
  local status
  if redis.call('EXISTS', d) == 0 then
    local first = redis.call('ZSCORE', pending, raw)
    if not first then
      redis.call('ZADD', pending, now_ms, raw)
      status = 'pending'
    elseif now_ms - tonumber(first) >= grace_ms then
      redis.call('ZREM', pending, raw)
      status = 'unmatched'
    else
      status = 'pending'
    end
  elseif redis.call('HEXISTS', d, 'e:' .. event_id) == 1 then
    status = 'duplicate'
  elseif event_time - tonumber(redis.call('HGET', d, 't')) > window_ms then
    redis.call('HSET', d, 'e:' .. event_id, 'late')
    status = 'late'
  else
    redis.call('HSET', d, 'e:' .. event_id, kind)
    status = 'applied'
    local imp = tonumber(redis.call('HGET', d, 'imp') or '0')
    if kind == 'impression' then
      if imp == 0 then emit(d, 'impression', 0, event_time) end
      if imp == 1 then status = 'repeat' end
      redis.call('HSET', d, 'imp', 1)
    else
      -- a click or conversion implies the variant was shown: credit the trial once
      if imp == 0 then
        emit(d, 'impression', 0, event_time)
        redis.call('HSET', d, 'imp', 2)
      end
      if kind == 'click' then
        if redis.call('HSETNX', d, 'clk', 1) == 1 then emit(d, 'click', 1, event_time) else status = 'repeat' end
      else
        if redis.call('HINCRBY', d, 'nconv', 1) <= max_conv then
          emit(d, 'conversion', value, event_time)
        else
          status = 'repeat'
        end
      end
    end
    if status == 'applied' then redis.call('ZREM', pending, raw) end
  end
  if status ~= 'pending' then redis.call('HINCRBY', ledger, status .. ':' .. kind, 1) end
  out[i] = status
end
return out
