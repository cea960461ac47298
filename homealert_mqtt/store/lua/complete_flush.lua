-- complete_flush.lua: after a batch was notified, move its alerts on.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] settings (see parse_settings in _lib.lua)
-- ARGV[3]  flush key
-- ARGV[4]  digest interval (ms)   ARGV[5] n, then n times:
--          timer member, next level ('' = none), next round, next due (ms)
--
-- For each alert still pageable at that epoch: level 0 makes a new alert active (T1),
-- a later level escalates it (T2); escalation_level records the level, and the next
-- timer is set (the next level, or a `repeat` of the last). Then the group's last notice
-- at this level is recorded, and the flush is removed, or rescheduled one digest
-- interval later when alerts joined the batch meanwhile.
--
-- Safe to repeat: a member no longer pending in the batch was completed by an earlier
-- call whose reply was lost (the engine retries a call a Redis blip failed), or pruned
-- as no longer pageable; either way it is skipped.
--
-- Returns a JSON list of {alert, rule} for the alerts it moved (alert as in ingest.lua;
-- cjson writes an empty list as `{}`).

local now = tonumber(ARGV[1])
local cfg = parse_settings(ARGV[2])
local fkey = ARGV[3]
local digest = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local out = {}
for i = 0, n - 1 do
  local member = ARGV[6 + i * 4]
  local next_level, next_round, next_due = ARGV[7 + i * 4], ARGV[8 + i * 4], ARGV[9 + i * 4]
  local pending = redis.call('SREM', k('pend', fkey), member) == 1
  local p = split(member, '|')
  local id, level = p[1], tonumber(p[3])
  local a = redis.call('HMGET', k('alert', id), 'state', 'epoch', 'escalation_level')
  if pending and a[1] and PAGEABLE[a[1]] and a[2] == p[2] then
    local action = 'escalate'
    if level == 0 then action = 'activate' end
    local to, rule = transition(id, action, now, cfg.retention,
      {'escalation_level', math.max(level, tonumber(a[3]) or 0), 'last_notified_at', now})
    if not to then
      -- level 0 of an already active alert (a repeat round): record, no state change
      redis.call('HSET', k('alert', id), 'last_notified_at', now, 'updated_at', now)
      rule = ''
    end
    if next_level ~= '' then
      set_timer(id, p[2], tonumber(next_level), tonumber(next_round), tonumber(next_due))
    else
      redis.call('HSET', k('alert', id), 'next_escalation_at', '')
    end
    out[#out + 1] = {alert = alert_snapshot(id), rule = rule}
  end
end
local gid = split(fkey, '|')[1]
local slot = string.sub(fkey, #gid + 2)
redis.call('HSET', k('gsent', gid), slot, now)
redis.call('HDEL', k('flowner'), fkey)
if redis.call('SCARD', k('pend', fkey)) == 0 then
  redis.call('ZREM', k('flushes'), fkey)
else
  redis.call('ZADD', k('flushes'), now + digest, fkey)
end
return cjson.encode(out)
