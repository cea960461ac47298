-- expire.lua: remove alerts whose retention has run out, and groups left empty.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] settings (see parse_settings in _lib.lua)
-- ARGV[3]  batch limit
--
-- Returns one JSON object {expired = alert ids, changed = states of groups that changed
-- (see group_state in _lib.lua), removed = ids of groups removed}; cjson writes an empty
-- list as `{}`.
-- Each removed alert and group is also put in the `clear` set, so that its retained
-- topic is cleared even if this process dies before it publishes the empty payload.

local now_s = ARGV[1]
local now = tonumber(now_s)
local cfg = parse_settings(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', k('retention'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local expired, changed, removed, touched = {}, {}, {}, {}

for _, id in ipairs(due) do
  local key = k('alert', id)
  local a = redis.call('HMGET', key, 'fp', 'group_id', 'priority', 'source', 'type')
  redis.call('ZREM', k('retention'), id)
  if a[3] then
    cancel_timer(id)
    redis.call('DEL', key, k('attempts', id), k('paged', id), k('gsent', '~' .. id))
    redis.call('ZREM', k('open'), id)
    redis.call('SREM', k('acked'), id)
    redis.call('SREM', k('escalated'), id)
    redis.call('SREM', k('prio', a[3]), id)
    if a[1] and redis.call('HGET', k('fp', a[1]), 'id') == id then
      redis.call('DEL', k('fp', a[1]))
    end
    redis.call('SADD', k('clear'), 'alert:' .. id)
    history_add(a[4], id, 'expired', a[5], a[3], now, now_s, cfg)
    expired[#expired + 1] = id
    local gid = a[2]
    if gid and gid ~= '' then
      redis.call('ZREM', k('gmembers', gid), id)
      touched[gid] = true
    end
  end
end

for gid, _ in pairs(touched) do
  if redis.call('ZCARD', k('gmembers', gid)) == 0 then
    local khash = redis.call('HGET', k('group', gid), 'khash')
    if khash and redis.call('HGET', k('gkey', khash), 'gid') == gid then
      redis.call('DEL', k('gkey', khash))
    end
    redis.call('DEL', k('group', gid), k('gmembers', gid), k('gsent', gid))
    redis.call('ZREM', k('groups'), gid)
    redis.call('SADD', k('clear'), 'group:' .. gid)
    removed[#removed + 1] = gid
  else
    redis.call('HSET', k('group', gid), 'updated', now)
    changed[#changed + 1] = group_state(gid)
  end
end
return cjson.encode({expired = expired, changed = changed, removed = removed})
