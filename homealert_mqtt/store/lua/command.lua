-- command.lua: acknowledge or resolve one alert (a command from MQTT or the CLI).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] settings (see parse_settings in _lib.lua)
-- ARGV[3]  action: ack | resolve   ARGV[4] alert id   ARGV[5] by ('' = nobody named)
-- ARGV[6]  note ('' = none)
--
-- Returns one JSON object {outcome, alert, group} (alert and group as in ingest.lua)
--   outcome: acknowledged | resolved | unchanged (same ack again) | unknown | final

local now_s = ARGV[1]
local now = tonumber(now_s)
local cfg = parse_settings(ARGV[2])
local action, id, by, note = ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local function reply(outcome, alert, group)
  return cjson.encode({outcome = outcome, alert = alert, group = group})
end

local state = redis.call('HGET', k('alert', id), 'state')
if not state then
  return reply('unknown', false, false)
end
if action == 'ack' and state == 'acknowledged' then
  -- Idempotent: the first ack's who and when stay.
  return reply('unchanged', alert_snapshot(id), false)
end

local extra
if action == 'ack' then
  extra = {'acknowledged_by', by, 'acknowledged_at', now, 'ack_note', note}
else
  extra = {'resolved_at', now, 'resolved_by', by}
end
local to = transition(id, action, now, cfg.retention, extra)
if not to then
  return reply('final', alert_snapshot(id), false)
end
local a = alert_snapshot(id)
history_add(field(a, 'source'), id, to, field(a, 'type'), field(a, 'priority'), now, now_s, cfg)
return reply(to, a, group_of(a))
