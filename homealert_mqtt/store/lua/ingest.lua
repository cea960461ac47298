-- ingest.lua: one validated alert, deduplicated, grouped and stored in one atomic step.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)
-- ARGV[2]  settings JSON: retention {state: ms}, dedup (bool), dedup_window (ms),
--          group_window (ms), group_max, hist_max, hist_age (ms)
-- ARGV[3]  the alert as one JSON array (one argument costs the service far less to send
--          than 19), in this order:
--   [1] fingerprint   [2] base id (topic-safe, without occurrence suffix)
--   [3] status: firing|resolved
--   [4] source   [5] type   [6] severity ('' = none)   [7] priority   [8] message
--   [9] attributes JSON (a string)   [10] device timestamp (ms) as a string, or ''
--   [11] group key hash ('' = no grouping)   [12] group key text   [13] base group id
--   [14] MQTT client id ('' = no redelivery check)   [15] packet id (number, 0 = none)
--   [16] dup flag (bool)   [17] payload digest
--   [18] quiet start (bool): true when level 0 reaches nobody, so the alert starts `active`
--        (T1) with level 1's timer instead of a level-0 timer
--   [19] level 1's delay (ms), or null when the policy has one level
--
-- Returns one JSON object {outcome, alert, group, events}:
--   outcome: created | deduplicated | reopened | resolved | redelivered | no_open_alert
--   alert: the alert's fields {name: string} (see alert_read in _lib.lua), or false
--   group: the group state (see group_state in _lib.lua), or false
--   events: names for <base>/event ("created", "grouped", ...); none is `{}` (cjson
--           writes every empty table as an object)

local now_s = ARGV[1]
local now = tonumber(now_s)
local cfg = cjson.decode(ARGV[2])
local fp, base_id, status, source, atype, severity, prio, message, attributes, ts,
  gkh, gtext, base_gid, client, mid, dup, digest, quiet, next_delay =
  unpack(cjson.decode(ARGV[3]))
if next_delay == cjson.null then next_delay = nil end

local function reply(outcome, alert, group, events)
  return cjson.encode({outcome = outcome, alert = alert, group = group, events = events})
end

-- The first escalation step of a new or re-opened alert: level 0 at once, or, when
-- level 0 reaches nobody, level 1 when it is due (the alert is already active). The
-- alert's timer fields go into `fields`, for the caller's one HSET. Neither alert has a
-- timer to cancel: a new one never had one, and resolving cancelled a re-opened one's.
local function first_timer(id, epoch, fields)
  local level, due = '0', now
  if quiet then
    if not next_delay then
      fields.next_escalation_at = ''
      return
    end
    level, due = '1', now + next_delay
  end
  local member = timer_member(id, epoch, level, '0')
  fields.timer = member
  fields.next_escalation_at = string.format('%d', due)
  redis.call('ZADD', k('timers'), fields.next_escalation_at, member)
end

local fpkey = k('fp', fp)

-- A QoS 1 message the broker sends again (DUP set) after we committed it but died
-- before the PUBACK: change nothing, answer with the state as it is.
if client ~= '' and mid ~= 0 then
  local seen = k('seen', client)
  if dup and redis.call('HGET', seen, mid) == digest then
    local cur = redis.call('HGET', fpkey, 'id')
    local a = cur and alert_snapshot(cur)
    if a then
      return reply('redelivered', a, group_of(a), {})
    end
    return reply('redelivered', false, false, {})
  end
  redis.call('HSET', seen, mid, digest)
end

local fp_state = redis.call('HMGET', fpkey, 'id', 'occ')
local cur = fp_state[1]
local cur_state, cur_fields = nil, nil
if cur then
  cur_fields = redis.call('HMGET', k('alert', cur), 'state', 'priority', 'resolved_at',
    'first_seen', 'count', 'epoch', 'rev')
  cur_state = cur_fields[1]
end

if status == 'resolved' then
  if cur_state and OPEN[cur_state] then
    transition(cur, 'resolve', now, cfg.retention,
      {'resolved_at', now, 'resolved_by', source, 'last_seen', now})
    history_add(source, cur, 'resolved', atype, cur_fields[2], now, cfg.hist_max, cfg.hist_age)
    local a = alert_snapshot(cur)
    return reply('resolved', a, group_of(a), {'resolved'})
  end
  return reply('no_open_alert', false, false, {})
end

-- Strings as they are stored: the new alert's reply is this table, not a read-back.
local update = {last_seen = now_s, updated_at = now_s, message = message,
  attributes = attributes, timestamp = ts}

if cfg.dedup and cur_state and OPEN[cur_state] then
  update.count = (tonumber(cur_fields[5]) or 0) + 1
  -- A repeat may raise the priority (a worse reading), never lower it.
  local old_prio = cur_fields[2]
  if PRIO_RANK[prio] < PRIO_RANK[old_prio] then
    update.priority = prio
    reindex(cur, cur_state, prio, old_prio, cur_fields[4])
  end
  update.rev = next_rev(cur_fields[7])
  hset(k('alert', cur), update)
  keep_until(cur, cur_state, now, cfg.retention)
  history_add(source, cur, 'deduplicated', atype, prio, now, cfg.hist_max, cfg.hist_age)
  local a = alert_read(cur)
  return reply('deduplicated', a, group_of(a), {'deduplicated'})
end

if cfg.dedup and cur_state == 'resolved' and now - tonumber(cur_fields[3]) <= cfg.dedup_window then
  -- Flap protection: firing again soon after a resolve re-opens the same alert.
  local epoch = (tonumber(cur_fields[6]) or 0) + 1
  update.epoch = epoch
  update.count = (tonumber(cur_fields[5]) or 0) + 1
  update.priority = prio
  update.severity = severity
  update.escalation_level = 0
  update.opened_at = now_s
  update.acknowledged_by = ''
  update.acknowledged_at = ''
  update.ack_note = ''
  update.resolved_at = ''
  update.resolved_by = ''
  first_timer(cur, epoch, update)
  update.rev = next_rev(cur_fields[7])
  hset(k('alert', cur), update)
  reindex(cur, 'resolved', prio, cur_fields[2], cur_fields[4])
  transition(cur, 'reopen', now, cfg.retention, {})
  if quiet then
    transition(cur, 'activate', now, cfg.retention, {})
  end
  history_add(source, cur, 'reopened', atype, prio, now, cfg.hist_max, cfg.hist_age)
  local a = alert_read(cur)
  return reply('reopened', a, group_of(a), {'reopened'})
end

-- A new alert: the fingerprint's next occurrence.
local occ = (tonumber(fp_state[2]) or 0) + 1
local id = base_id
if occ > 1 then id = base_id .. '-' .. occ end
while redis.call('EXISTS', k('alert', id)) == 1 do
  occ = occ + 1
  id = base_id .. '-' .. occ
end
redis.call('HSET', fpkey, 'id', id, 'occ', occ)

local events = {'created'}
local gid, group = '', false
if gkh ~= '' then
  local gk = k('gkey', gkh)
  local gkey_state = redis.call('HMGET', gk, 'gid', 'seq')
  local cand = gkey_state[1]
  if cand then
    local created = redis.call('HGET', k('group', cand), 'created')
    if created and now - tonumber(created) <= cfg.group_window
        and redis.call('ZCARD', k('gmembers', cand)) < cfg.group_max then
      gid = cand
      events[#events + 1] = 'grouped'
    end
  end
  if gid == '' then
    local seq = (tonumber(gkey_state[2]) or 0) + 1
    gid = base_gid
    if seq > 1 then gid = base_gid .. '-' .. seq end
    while redis.call('EXISTS', k('group', gid)) == 1 do
      seq = seq + 1
      gid = base_gid .. '-' .. seq
    end
    redis.call('HSET', k('group', gid), 'id', gid, 'key', gtext, 'khash', gkh, 'created', now_s,
      'updated', now_s)
    redis.call('ZADD', k('groups'), now_s, gid)
    redis.call('HSET', gk, 'gid', gid, 'seq', seq)
    -- What group_state(gid) would read back: this alert is the only member, open and not
    -- acknowledged.
    group = {id = gid, key = gtext, created = now_s, updated = now_s, state = 'active',
      highest = prio, members = {id}, last_digest = ''}
  else
    redis.call('HSET', k('group', gid), 'updated', now_s)
  end
  redis.call('ZADD', k('gmembers', gid), now_s, id)
end

local state, rule = 'new', 'T0'
if quiet then state, rule = 'active', 'T1' end
local fields = update
fields.id = id
fields.fp = fp
fields.state = state
fields.rule = rule
fields.priority = prio
fields.severity = severity
fields.source = source
fields.type = atype
fields.count = '1'
fields.first_seen = now_s
fields.group_id = gid
fields.escalation_level = '0'
fields.epoch = '1'
fields.opened_at = now_s
first_timer(id, '1', fields)
fields.rev = next_rev(nil) -- the id has no hash yet (above), so no earlier rev
hset(k('alert', id), fields)
-- reindex() for a new id: in no index yet, so nothing to take out of acked or escalated.
redis.call('ZADD', k('open'), now_s, id)
redis.call('SADD', k('prio', prio), id)
keep_until(id, state, now, cfg.retention)
history_add(source, id, 'created', atype, prio, now, cfg.hist_max, cfg.hist_age)
if gid ~= '' and not group then
  group = group_state(gid)
end
return reply('created', fields, group, events)
