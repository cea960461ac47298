-- claim_flush.lua: take due notification batches, each under a lease.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] lease (ms)   ARGV[3] batch limit
-- ARGV[4]  this call's token   ARGV[5] the token of the caller's previous call ('' none)
-- ARGV[6]  the caller's incarnation (recorded as the batch's owner, see bury.lua)
--
-- A claimed flush is pushed `lease` into the future instead of removed: if the process
-- that claimed it dies, it becomes due again and whoever is alive sends it (delivery
-- keys make sure nobody is paged twice). complete_flush.lua removes it.
--
-- Returns a JSON list of {key, due (ms), members = {timer members}, alerts = {alert...}}
-- (alerts as in ingest.lua, one per member); members whose alert is no longer pageable
-- are dropped from the batch. cjson writes an empty list as `{}`.
--
-- Safe to repeat: a reply that claimed something is kept under the call's token (until
-- the caller's next call, or the lease), and the same call again gets it back. Without
-- that, a reply lost with a connection would leave its batches claimed by nobody until
-- the lease ran out, and a Redis blip would cost a page its 90 s.

if ARGV[5] ~= '' then
  redis.call('DEL', k('claimed', ARGV[5]))
end
local again = redis.call('GET', k('claimed', ARGV[4]))
if again then
  return again
end

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
    redis.call('HDEL', k('flowner'), fkey)
  else
    redis.call('ZADD', k('flushes'), now + lease, fkey)
    redis.call('HSET', k('flowner'), fkey, ARGV[6])
    out[#out + 1] = {key = fkey, due = score, members = members, alerts = alerts}
  end
end
local reply = cjson.encode(out)
if #out > 0 then
  redis.call('SET', k('claimed', ARGV[4]), reply, 'PX', lease)
end
return reply
