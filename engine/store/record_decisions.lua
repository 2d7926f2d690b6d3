-- Store a batch of one experiment's decisions so events can join them (idempotent).
-- KEYS[1] any key of the experiment (its hash tag fixes the cluster slot)
-- ARGV[1] ttl ms  ARGV[2] prefix of decision keys (same hash tag)
-- ARGV[3] one JSON array: [[decision_id, decided_at_ms, record_json], ...]
local ttl, prefix = tonumber(ARGV[1]), ARGV[2]
local items = cjson.decode(ARGV[3])
for i = 1, #items do
  local key = prefix .. items[i][1]
  redis.call('HSET', key, 't', items[i][2], 'r', items[i][3])
  redis.call('PEXPIRE', key, ttl)
end
return #items
