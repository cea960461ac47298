-- ack_timeout.lua: acknowledgements that went stale (alerts.escalation.ack_timeout).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] settings (see parse_settings in _lib.lua)
-- ARGV[3]  ack timeout (ms)
--
-- Every alert still acknowledged `timeout` after its acknowledgement goes back to
-- `active` (T6) and escalates from level 0 (see unacknowledge in _noise.lua). Checked
-- and changed in one step, so with several replicas or after a kill -9 each stale ack
-- is taken once.
--
-- Returns a JSON list of the alerts it changed (as in ingest.lua) and `next`: when the
-- next acknowledgement goes stale (ms), or false: {alerts = {...}, next = ...}.

local now = tonumber(ARGV[1])
local cfg = parse_settings(ARGV[2])
local timeout = tonumber(ARGV[3])
local out, next_at = {}, false
for _, id in ipairs(redis.call('SMEMBERS', k('acked'))) do
  local at = tonumber(redis.call('HGET', k('alert', id), 'acknowledged_at') or '')
  if at then
    if at + timeout <= now then
      if unacknowledge(id, now, cfg, 'unacknowledged') then
        out[#out + 1] = alert_snapshot(id)
      end
    elseif not next_at or at + timeout < next_at then
      next_at = at + timeout
    end
  end
end
return cjson.encode({alerts = out, next = next_at})
