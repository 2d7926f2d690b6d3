-- Forget resolved pending payloads, atomically with the pending zset.
--
-- KEYS[1] pending zset   KEYS[2] pending payloads hash   KEYS[3] ledger hash (counters)
-- ARGV[1] now_ms   ARGV[2] orphan_ms
--
-- A payload is deleted only if its member is not in the zset at this instant. Checking the two
-- with separate commands (before 2026-12-05) raced with the join script: a member added between
-- the two reads lost its payload and waited forever, neither joined nor dead-lettered. Members a
-- race like that left without a payload cannot be retried; once older than orphan_ms they are
-- removed and counted as 'orphaned' in the ledger hash, so the loss is visible and the retry loop
-- can finish. (A worker that died between marking an event waiting and storing its payload never
-- committed the record: its replay parks the event again, so such a count is not a loss.)
--
-- Returns {members still waiting, orphans removed now}.
local pending, payloads, ledger = KEYS[1], KEYS[2], KEYS[3]
for _, m in ipairs(redis.call('HKEYS', payloads)) do
  if not redis.call('ZSCORE', pending, m) then redis.call('HDEL', payloads, m) end
end
local orphans = 0
local old = redis.call('ZRANGEBYSCORE', pending, '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
for _, m in ipairs(old) do
  if redis.call('HEXISTS', payloads, m) == 0 then
    redis.call('ZREM', pending, m)
    orphans = orphans + 1
  end
end
if orphans > 0 then redis.call('HINCRBY', ledger, 'orphaned', orphans) end
return {redis.call('ZCARD', pending), orphans}
