-- claim_flush.lua: take due notification batches, each under a lease.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] lease (ms)   ARGV[3] batch limit
--
-- A claimed flush is pushed `lease` into the future instead of removed: if the process
-- that claimed it dies, it becomes due again and whoever is alive sends it (delivery
-- keys make sure nobody is paged twice). complete_flush.lua removes it.
--
-- Returns a JSON list of {key, due (ms), members = {timer members}, alerts = {alert...}}
-- (alerts as in ingest.lua, one per member); members whose alert is no longer pageable
-- are dropped from the batch. cjson writes an empty list as `{}`.

local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', k('flushes'), '-inf', now, 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[3]))
local out = {}
for i = 1, #due, 2 do
  local fkey, score = due[i], due[i + 1]
  local members, alerts = {}, {}
  for _, member in ipairs(redis.call('SMEMBERS', k('pend', fkey))) do
    local p = split(member, '|')
    local a = redis.call('HMGET', k('alert', p[1]), 'state', 'epoch')
    if a[1] and PAGEABLE[a[1]] and a[2] == p[2] then
      members[#members + 1] = member
      alerts[#alerts + 1] = alert_snapshot(p[1])
    else
      redis.call('SREM', k('pend', fkey), member)
    end
  end
  if #members == 0 then
    redis.call('ZREM', k('flushes'), fkey)
  else
    redis.call('ZADD', k('flushes'), now + lease, fkey)
    out[#out + 1] = {key = fkey, due = score, members = members, alerts = alerts}
  end
end
return cjson.encode(out)
