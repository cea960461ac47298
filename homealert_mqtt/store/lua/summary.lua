-- summary.lua: the counts behind <base>/summary, read in one consistent step.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  how many of the newest open alert ids to list
--
-- Returns {open, acknowledged, escalated, {P1..P5 open}, {P1..P5 open and not acknowledged},
--          {newest open ids}}

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
return {open, acked, escalated, by, active_by, newest}
