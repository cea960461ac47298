-- presence.lua: availability and heartbeat deadlines, each a record and a due time.
--
-- A record (HASH presence, field "<d|h>:<name>") holds what was last observed, the
-- deadline by which the device must be back or the next heartbeat must come
-- (`deadline`, 0 = none), whether an alert was raised for it (`raised`), and the action a
-- replica claimed but has not finished (`act`, with its lease `lease` and generation
-- `gen`). ZSET presence_due says when each record needs looking at again. Raising and
-- resolving are claimed here and carried out by the caller (an ingest of the alert); a
-- claim whose replica died comes back once its lease ran out, so nothing is forgotten,
-- and a claim in flight blocks the next one for the same record, so nothing happens
-- twice or out of order.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  op: observe | claim | done | forget
-- ARGV[2]  now (epoch ms)
-- observe: ARGV[3] member, ARGV[4] event: online | offline | beat | watch,
--          ARGV[5] the deadline's delay in ms (offline: `for`; beat, watch: every+grace),
--          ARGV[6] JSON details kept on the record {name, source, severity, topic}
--   returns 1 when the record's published view changed (state or last_seen), else 0
-- claim:   ARGV[3] lease ms, ARGV[4] most records to claim
--   returns JSON {claimed: [{member, action: raise|resolve, gen, record}, ...],
--   next: when the first record left needs a look (ms), or 0 for none}
-- done:    ARGV[3] member, ARGV[4] gen: the claimed action was carried out
--   returns 1, or 0 when the claim was no longer this caller's (its lease ran out)
-- forget:  ARGV[3] member: drop a record that nothing raised (heartbeat gone from config)
--   returns 1 when dropped

local op, now = ARGV[1], tonumber(ARGV[2])
local records, due = k('presence'), k('presence_due')

local function load(member)
  local raw = redis.call('HGET', records, member)
  if not raw then
    return nil
  end
  return cjson.decode(raw)
end

-- When the record needs a look: at its deadline while nothing is raised; now when an
-- alert is raised but the deadline no longer stands (resolve); never otherwise. Not
-- before a claim in flight ends.
local function reschedule(member, rec)
  local at
  local failing = rec.deadline > 0 and rec.deadline <= now
  if rec.act then
    at = rec.lease
  elseif rec.raised == 0 and rec.deadline > 0 then
    at = rec.deadline
  elseif rec.raised == 1 and not failing then
    at = now
  end
  if at then
    redis.call('ZADD', due, string.format('%d', at), member)
  else
    redis.call('ZREM', due, member)
  end
end

local function save(member, rec)
  redis.call('HSET', records, member, cjson.encode(rec))
  reschedule(member, rec)
end

if op == 'observe' then
  local member, event, delay = ARGV[3], ARGV[4], tonumber(ARGV[5])
  local rec = load(member)
  local fresh = rec == nil
  if fresh then
    rec = {state = '', deadline = 0, raised = 0, gen = 0, lease = 0, last_seen = false}
  end
  local details = cjson.decode(ARGV[6])
  rec.name, rec.source, rec.severity, rec.topic =
    details.name, details.source, details.severity, details.topic
  local changed = fresh
  if event == 'offline' then
    if rec.state ~= 'offline' then -- a repeat (a retained replay) keeps the first deadline
      rec.state, rec.since, rec.deadline = 'offline', now, now + delay
      changed = true
    end
  elseif event == 'online' then
    if rec.state ~= 'online' then
      rec.state, rec.since, rec.deadline, rec.last_seen = 'online', now, 0, now
      changed = true
    end
  elseif event == 'beat' then
    rec.state, rec.deadline, rec.last_seen = 'ok', now + delay, now
    changed = true
  elseif event == 'watch' then -- a configured heartbeat: due from now if never seen
    if fresh then
      rec.state, rec.deadline = 'ok', now + delay
    end
  else
    return redis.error_reply('presence.lua: unknown event ' .. tostring(event))
  end
  save(member, rec)
  return changed and 1 or 0
end

if op == 'claim' then
  local lease, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
  local claimed = {}
  local members = redis.call('ZRANGEBYSCORE', due, '-inf', string.format('%d', now),
    'LIMIT', 0, limit)
  for _, member in ipairs(members) do
    local rec = load(member)
    if not rec then
      redis.call('ZREM', due, member)
    else
      local action = rec.act -- a claim whose replica died: carried out again
      if not action then
        local failing = rec.deadline > 0 and rec.deadline <= now
        if failing and rec.raised == 0 then
          action = 'raise'
        elseif not failing and rec.raised == 1 then
          action = 'resolve'
        end
      end
      if action then
        rec.act, rec.lease, rec.gen = action, now + lease, rec.gen + 1
        rec.raised = action == 'raise' and 1 or 0
        claimed[#claimed + 1] = {member = member, action = action, gen = rec.gen, record = rec}
      end
      save(member, rec)
    end
  end
  local head = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
  local next_at = head[2] and tonumber(head[2]) or 0
  if #claimed == 0 then
    return '{"claimed": [], "next": ' .. string.format('%d', next_at) .. '}'
  end
  return cjson.encode({claimed = claimed, next = next_at})
end

if op == 'done' then
  local member, gen = ARGV[3], tonumber(ARGV[4])
  local rec = load(member)
  if not rec or rec.gen ~= gen or not rec.act then
    return 0
  end
  rec.act, rec.lease = nil, 0
  save(member, rec)
  return 1
end

if op == 'forget' then
  local member = ARGV[3]
  local rec = load(member)
  if not rec or rec.raised == 1 or rec.act then
    return 0
  end
  redis.call('HDEL', records, member)
  redis.call('ZREM', due, member)
  return 1
end

return redis.error_reply('presence.lua: unknown op ' .. tostring(op))
