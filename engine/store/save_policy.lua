-- Save a policy snapshot unless a newer one (by reward-stream cursor) is stored.
-- Fences a worker that lost an experiment in a rebalance from overwriting the new owner.
-- KEYS[1] policy key  KEYS[2] policy versions hash
-- ARGV[1] experiment id  ARGV[2] cursor ms  ARGV[3] cursor seq  ARGV[4] snapshot json  ARGV[5] version
local cur = redis.call('HMGET', KEYS[1], 'cursor_ms', 'cursor_seq')
if cur[1] then
  local ms, seq = tonumber(cur[1]), tonumber(cur[2])
  local nms, nseq = tonumber(ARGV[2]), tonumber(ARGV[3])
  if nms < ms or (nms == ms and nseq < seq) then return 0 end
end
redis.call('HSET', KEYS[1], 'cursor_ms', ARGV[2], 'cursor_seq', ARGV[3], 'snapshot', ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
