-- noise_mark.lua: put silences and inhibitions on alerts, or take silences off (a
-- replaced silence that no longer matches).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] n, then n times: kind ("s" silence, "i" inhibition),
--          alert id, silence id or source alert id, flush key ('' = none), timer member
--          ('' = none)
-- ARGV[3 + 5n] m, then m times: alert id, silence id (to take off)
--
-- A silence is put on an open alert only while it is on, an inhibition only while its
-- source is open. With a flush key (the escalation engine found the alert in a batch it
-- claimed), the member of an alert that is quiet leaves that batch. Taking off the last
-- silence of a pageable alert that nothing inhibits restarts its escalation at level 0.
--
-- Returns a JSON list of {alert, quiet, event}: quiet says a silence or an inhibition is
-- on the alert now; event is "silenced", "unsilenced" or "" (alert as in ingest.lua).

local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local kind, id, by = ARGV[3 + i * 5], ARGV[4 + i * 5], ARGV[5 + i * 5]
  local fkey, member = ARGV[6 + i * 5], ARGV[7 + i * 5]
  local state = redis.call('HGET', k('alert', id), 'state')
  if state and OPEN[state] then
    local event = ''
    if kind == 's' then
      if silence_on(by, now) and silence_add(id, by) then
        event = 'silenced'
      end
    elseif by ~= id and source_open(by) then
      inhibit_add(id, by)
    end
    -- Quiet while anything is on it: the end of that (one that ended a moment ago, its
    -- end not yet claimed, too) restarts its escalation.
    if is_quiet(id) then
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
local base = 3 + n * 5
local m = tonumber(ARGV[base])
for i = 0, m - 1 do
  local id, sid = ARGV[base + 1 + i * 2], ARGV[base + 2 + i * 2]
  if redis.call('EXISTS', k('alert', id)) == 1 and silence_remove(id, sid, now) then
    out[#out + 1] = {alert = alert_snapshot(id), quiet = false, event = 'unsilenced'}
  end
end
return cjson.encode(out)
