-- flap_settle.lua: flapping alerts that stayed put for a whole window
-- (alerts.types.<type>.flapping).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] limit
--
-- flapq is a zset: alert id by when its flap ends, pushed back by every re-opening and
-- resolve (ingest.lua). Each due alert loses `flapping`; if it is open, not acknowledged
-- and nothing else holds it (silence, inhibition), it pages once with its current state:
-- escalation from level 0, as after a silence. One atomic step per call: with several
-- replicas or after a kill -9 each flap ends once.
--
-- Returns JSON {alerts = {alert...}, next = ms or false} (alerts as in ingest.lua).

local now = tonumber(ARGV[1])
local out = {}
local due = redis.call('ZRANGEBYSCORE', k('flapq'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', k('flapq'), id)
  if redis.call('HGET', k('alert', id), 'flapping') == '1' then
    redis.call('HSET', k('alert', id), 'flapping', '0',
      'updated_at', string.format('%d', now))
    if not is_quiet(id) then
      restart_escalation(id, now)
    end
    out[#out + 1] = alert_snapshot(id)
  end
end
local head = redis.call('ZRANGE', k('flapq'), 0, 0, 'WITHSCORES')
local next_at = false
if head[2] then
  next_at = tonumber(head[2])
end
return cjson.encode({alerts = out, next = next_at})
