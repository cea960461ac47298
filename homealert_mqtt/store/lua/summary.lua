-- summary.lua: the counts behind <base>/summary, read in one consistent step.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  how many of the newest open alert ids to list
-- ARGV[2]  how many of the newest open alerts to describe (bounded work in a storm)
--
-- Returns {open, acknowledged, escalated, {P1..P5 open}, {P1..P5 open and not acknowledged},
--          {newest open ids}, {{id, priority, state, source, type, message, first_seen}, ...}}
--          (the described alerts, newest first), open alerts with a silence on

local open = redis.call('ZCARD', k('open'))
local acked = redis.call('SCARD', k('acked'))
local escalated = redis.call('SCARD', k('escalated'))
local by, active_by = {}, {}
for i = 1, 5 do
  local key = k('prio', 'P' .. i)
  local n = redis.call('SCARD', key)
  by[i] = n
  if n > 0 and acked > 0 then
    active_by[i] = n - #redis.call('SINTER', key, k('acked'))
  else
    active_by[i] = n
  end
end
local newest = redis.call('ZREVRANGE', k('open'), 0, tonumber(ARGV[1]) - 1)
-- `silenced` keeps resolved alerts until their silence ends: counted only while open.
local silenced = 0
for _, id in ipairs(redis.call('SMEMBERS', k('silenced'))) do
  if redis.call('ZSCORE', k('open'), id) then
    silenced = silenced + 1
  end
end
local described = {}
for _, id in ipairs(redis.call('ZREVRANGE', k('open'), 0, tonumber(ARGV[2]) - 1)) do
  local f = redis.call('HMGET', k('alert', id),
    'priority', 'state', 'source', 'type', 'message', 'first_seen')
  if f[1] then
    described[#described + 1] = {id, f[1], f[2], f[3], f[4], f[5] or '', f[6]}
  end
end
return {open, acked, escalated, by, active_by, newest, described, silenced}
