-- Append float32 records to users' memories, keep the last max_bytes of each, refresh the TTL.
-- KEYS: the users' memory keys (one experiment: one cluster slot through the {experiment} tag).
-- ARGV[1]: max_bytes (max_len records of width float32s); ARGV[2]: ttl in seconds;
-- ARGV[2 + i]: the new records of KEYS[i], concatenated (a whole number of records).
-- A memory is a string, not a list, so a decide reads any number of users with one MGET (a
-- pipeline of LRANGEs cost ~4x the CPU per user: bench/bench_memory_reads.py). A key still holding
-- the list of the earlier format is replaced at its first write (until then MGET reads it as no
-- memory).
local max_bytes = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if redis.call('TYPE', key).ok == 'list' then
    redis.call('DEL', key)
  end
  local n = redis.call('APPEND', key, ARGV[2 + i])
  if n > max_bytes then
    redis.call('SET', key, redis.call('GETRANGE', key, -max_bytes, -1))
  end
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
