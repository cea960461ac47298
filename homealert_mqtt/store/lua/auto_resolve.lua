-- auto_resolve.lua: alerts whose type resolves itself (alerts.types.<type>.auto_resolve)
-- and that were not repeated for that long.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] settings (see parse_settings in _lib.lua)
-- ARGV[3]  limit
--
-- autores is a zset: alert id by its deadline, pushed back by every repeat (ingest.lua).
-- Each due alert still open resolves (T4, resolved_by "auto"), claimed and changed in one
-- step: with several replicas or after a kill -9 each is resolved once.
--
-- Returns JSON {alerts = {{alert, group}}, next = ms or false} (as in ingest.lua).

local now_s = ARGV[1]
local now = tonumber(now_s)
local cfg = parse_settings(ARGV[2])
local out = {}
local due = redis.call('ZRANGEBYSCORE', k('autores'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
  redis.call('ZREM', k('autores'), id)
  local state = redis.call('HGET', k('alert', id), 'state')
  if state and OPEN[state] then
    transition(id, 'resolve', now, cfg.retention, {'resolved_at', now_s, 'resolved_by', 'auto'})
    local a = alert_snapshot(id)
    history_add(field(a, 'source'), id, 'resolved', field(a, 'type'), field(a, 'priority'), now,
      now_s, cfg)
    out[#out + 1] = {alert = a, group = group_of(a)}
  end
end
local head = redis.call('ZRANGE', k('autores'), 0, 0, 'WITHSCORES')
local next_at = false
if head[2] then
  next_at = tonumber(head[2])
end
return cjson.encode({alerts = out, next = next_at})
