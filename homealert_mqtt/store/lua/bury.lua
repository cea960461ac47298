-- bury.lua: a replica starting again hands back what its previous run had claimed.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  client id   ARGV[2] this run's incarnation ("<client id>:<random>")
-- ARGV[3]  now (ms)    ARGV[4] how long a dead incarnation is remembered (ms, >= lease)
--
-- One client id is one replica: the broker keeps one connection per client id, so when
-- a replica starts, the run it recorded before is over (kill -9, power cut). Its claimed
-- batches are due again now, instead of after their lease, and its pending delivery and
-- claim keys are free (reserve.lua checks `dead`). What it had sent but not recorded is
-- sent again: the documented at-least-once window, now a restart long rather than a
-- lease. A replica that never comes back is still covered by the lease.
--
-- Returns the number of batches handed back.

local client, mine, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local previous = redis.call('HGET', k('incarnation'), client)
redis.call('HSET', k('incarnation'), client, mine)
redis.call('ZREMRANGEBYSCORE', k('dead'), '-inf', now - tonumber(ARGV[4]))
if not previous or previous == mine then
  return 0
end
redis.call('ZADD', k('dead'), now, previous)
local released = 0
local owners = redis.call('HGETALL', k('flowner'))
for i = 1, #owners, 2 do
  if owners[i + 1] == previous then
    released = released + redis.call('ZADD', k('flushes'), 'XX', 'CH', now, owners[i])
    redis.call('HDEL', k('flowner'), owners[i])
  end
end
return released
