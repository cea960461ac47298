-- command.lua: acknowledge or resolve one alert (a command from MQTT or the CLI).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] settings JSON (see ingest.lua)
-- ARGV[3]  action: ack | resolve   ARGV[4] alert id   ARGV[5] by ('' = nobody named)
-- ARGV[6]  note ('' = none)
--
-- Returns {outcome, alert (HGETALL list) or false, group state or false}
--   outcome: acknowledged | resolved | unchanged (same ack again) | unknown | final

local now = tonumber(ARGV[1])
local cfg = cjson.decode(ARGV[2])
local action, id, by, note = ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local state = redis.call('HGET', k('alert', id), 'state')
if not state then
  return {'unknown', false, false}
end
if action == 'ack' and state == 'acknowledged' then
  -- Idempotent: the first ack's who and when stay.
  return {'unchanged', alert_flat(id), false}
end

local extra
if action == 'ack' then
  extra = {'acknowledged_by', by, 'acknowledged_at', now, 'ack_note', note}
else
  extra = {'resolved_at', now, 'resolved_by', by}
end
local to = transition(id, action, now, cfg.retention, extra)
if not to then
  return {'final', alert_flat(id), false}
end
local a = redis.call('HMGET', k('alert', id), 'source', 'type', 'priority')
history_add(a[1], id, to, a[2], a[3], now, cfg.hist_max, cfg.hist_age)
return {to, alert_flat(id), group_of(id)}
