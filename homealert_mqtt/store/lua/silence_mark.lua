-- silence_mark.lua: put silences on alerts, or take them off (a replaced silence that no
-- longer matches).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] n, then n times: alert id, silence id,
--          flush key ('' = none), timer member ('' = none)
-- ARGV[3 + 4n] m, then m times: alert id, silence id (to take off)
--
-- A silence is put on an open alert only while it is on. With a flush key (the escalation
-- engine found the alert in a batch it claimed), the member of an alert that has a
-- silence on leaves that batch.
-- Taking off the last silence of a pageable alert restarts its escalation at level 0.
--
-- Returns a JSON list of {alert, quiet, event}: quiet says a silence is on the alert
-- now; event is "silenced", "unsilenced" or "" (alert as in ingest.lua).

local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local id, sid, fkey, member = ARGV[3 + i * 4], ARGV[4 + i * 4], ARGV[5 + i * 4], ARGV[6 + i * 4]
  local state = redis.call('HGET', k('alert', id), 'state')
  if state and OPEN[state] then
    local event = ''
    if silence_on(sid, now) and silence_add(id, sid) then
      event = 'silenced'
    end
    -- Quiet while any silence is on it: that silence's end restarts its escalation (one
    -- that ended a moment ago, its end not yet claimed, too).
    if #silenced_list(id) > 0 then
      if fkey ~= '' then
        redis.call('SREM', k('pend', fkey), member)
        if redis.call('SCARD', k('pend', fkey)) == 0 then
          -- Claimed, so its time is the lease's end: a member joining later (this
          -- alert's restart) must not wait for that.
          redis.call('ZREM', k('flushes'), fkey)
        end
      end
      out[#out + 1] = {alert = alert_snapshot(id), quiet = true, event = event}
    end
  end
end
local base = 3 + n * 4
local m = tonumber(ARGV[base])
for i = 0, m - 1 do
  local id, sid = ARGV[base + 1 + i * 2], ARGV[base + 2 + i * 2]
  if redis.call('EXISTS', k('alert', id)) == 1 and silence_remove(id, sid, now) then
    out[#out + 1] = {alert = alert_snapshot(id), quiet = false, event = 'unsilenced'}
  end
end
return cjson.encode(out)
