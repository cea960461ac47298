-- schedule.lua: move due escalation timers into per-(group, level) batches.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] digest interval (ms)   ARGV[3] batch limit
--
-- Each due timer "<id>|<epoch>|<level>|<round>" of a pageable alert joins the pending set
-- of "<group>|<level>.<round>" (an alert without a group is its own group "~<id>"), and a
-- flush of that set is scheduled: at once when the group was never notified at that
-- level (the first alert of a group pages at once), else one digest interval after the
-- last notice. Stale timers (acknowledged, resolved, re-opened since) are dropped.
-- Atomic, so with several replicas each timer is taken by exactly one.
--
-- Returns the number of timers moved.

local now = tonumber(ARGV[1])
local digest = tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', k('timers'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local moved = 0
for _, member in ipairs(due) do
  redis.call('ZREM', k('timers'), member)
  local p = split(member, '|')
  local id = p[1]
  local a = redis.call('HMGET', k('alert', id), 'state', 'timer', 'group_id')
  if a[1] and a[2] == member and PAGEABLE[a[1]] then
    redis.call('HDEL', k('alert', id), 'timer')
    local gid = a[3]
    if not gid or gid == '' then gid = '~' .. id end
    local slot = p[3] .. '.' .. p[4]
    local fkey = gid .. '|' .. slot
    redis.call('SADD', k('pend', fkey), member)
    local last = redis.call('HGET', k('gsent', gid), slot)
    local at = now
    if last then at = math.max(now, tonumber(last) + digest) end
    redis.call('ZADD', k('flushes'), 'NX', at, fkey)
    moved = moved + 1
  end
end
return moved
