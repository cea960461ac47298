-- inhibit_release.lua: let the targets of resolved (or removed) sources go.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)
--
-- Every source of inhibition recorded in inhsrc that is no longer open is taken off
-- each alert it inhibited; an open, unacknowledged target left with nothing on it
-- escalates from level 0 (a level-0 timer due now). Atomic, so with several replicas
-- or after a kill -9 each source is released once; the service runs it every pass.
--
-- Returns a JSON list of the targets it changed (alerts as in ingest.lua).

local now = tonumber(ARGV[1])
local out = {}
for _, src in ipairs(redis.call('SMEMBERS', k('inhsrc'))) do
  local state = redis.call('HGET', k('alert', src), 'state')
  if not state or not OPEN[state] then
    for _, id in ipairs(redis.call('SMEMBERS', k('inhtgt', src))) do
      if redis.call('EXISTS', k('alert', id)) == 1 and inhibit_remove(id, src, now) then
        out[#out + 1] = alert_snapshot(id)
      end
    end
    redis.call('DEL', k('inhtgt', src))
    redis.call('SREM', k('inhsrc'), src)
    redis.call('INCR', k('inh_ver'))
  end
end
return cjson.encode(out)
