-- Store a batch of one experiment's decisions so events can join them (idempotent).
-- KEYS[i] decision hash of decision i
-- ARGV[1] ttl ms, then 2 ARGV per decision: decided-at ms, the decision record (JSON)
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], 't', ARGV[2 * i], 'r', ARGV[2 * i + 1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
