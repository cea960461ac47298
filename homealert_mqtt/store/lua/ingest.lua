-- ingest.lua: one validated alert, deduplicated, grouped and stored in one atomic step.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)
-- ARGV[2]  settings JSON: retention {state: ms}, dedup (bool), dedup_window (ms),
--          group_window (ms), group_max, hist_max, hist_age (ms)
-- ARGV[3]  fingerprint            ARGV[4]  base id (topic-safe, without occurrence suffix)
-- ARGV[5]  status: firing|resolved
-- ARGV[6]  source  ARGV[7] type  ARGV[8] severity  ARGV[9] priority  ARGV[10] message
-- ARGV[11] attributes JSON        ARGV[12] device timestamp (ms) or ''
-- ARGV[13] group key hash ('' = no grouping)   ARGV[14] group key text   ARGV[15] base group id
-- ARGV[16] MQTT client id ('' = no redelivery check)  ARGV[17] packet id  ARGV[18] dup flag
-- ARGV[19] payload digest
-- ARGV[20] quiet start: '1' when level 0 reaches nobody, so the alert starts `active`
--          (T1) with level 1's timer instead of a level-0 timer   ARGV[21] level 1's delay
--          (ms) or '' when the policy has one level
--
-- Returns {outcome, alert (HGETALL list) or false, group state or false, events}
--   outcome: created | deduplicated | reopened | resolved | redelivered | no_open_alert
--   events: names for <base>/event ("created", "grouped", ...)

local now = tonumber(ARGV[1])
local cfg = cjson.decode(ARGV[2])
local fp, base_id, status = ARGV[3], ARGV[4], ARGV[5]
local source, atype, severity, prio, message = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local attributes, ts = ARGV[11], ARGV[12]
local gkh, gtext, base_gid = ARGV[13], ARGV[14], ARGV[15]
local client, mid, dup, digest = ARGV[16], ARGV[17], ARGV[18], ARGV[19]
local quiet, next_delay = ARGV[20] == '1', tonumber(ARGV[21])

-- The first escalation step of a new or re-opened alert: level 0 at once, or, when
-- level 0 reaches nobody, level 1 when it is due (the alert is already active).
local function first_timer(id, epoch)
  if not quiet then
    set_timer(id, epoch, 0, 0, now)
  elseif next_delay then
    set_timer(id, epoch, 1, 0, now + next_delay)
  else
    redis.call('HSET', k('alert', id), 'next_escalation_at', '')
  end
end

local fpkey = k('fp', fp)

-- A QoS 1 message the broker sends again (DUP set) after we committed it but died
-- before the PUBACK: change nothing, answer with the state as it is.
if client ~= '' and mid ~= '0' then
  local seen = k('seen', client)
  if dup == '1' and redis.call('HGET', seen, mid) == digest then
    local cur = redis.call('HGET', fpkey, 'id')
    if cur and redis.call('EXISTS', k('alert', cur)) == 1 then
      return {'redelivered', alert_flat(cur), group_of(cur), {}}
    end
    return {'redelivered', false, false, {}}
  end
  redis.call('HSET', seen, mid, digest)
end

local cur = redis.call('HGET', fpkey, 'id')
local cur_state, cur_fields = nil, nil
if cur then
  cur_fields = redis.call('HMGET', k('alert', cur), 'state', 'priority', 'resolved_at', 'first_seen')
  cur_state = cur_fields[1]
end

if status == 'resolved' then
  if cur_state and OPEN[cur_state] then
    transition(cur, 'resolve', now, cfg.retention,
      {'resolved_at', now, 'resolved_by', source, 'last_seen', now})
    history_add(source, cur, 'resolved', atype, cur_fields[2], now, cfg.hist_max, cfg.hist_age)
    return {'resolved', alert_flat(cur), group_of(cur), {'resolved'}}
  end
  return {'no_open_alert', false, false, {}}
end

local update = {'last_seen', now, 'updated_at', now, 'message', message, 'attributes', attributes,
  'timestamp', ts}

if cfg.dedup and cur_state and OPEN[cur_state] then
  local key = k('alert', cur)
  redis.call('HINCRBY', key, 'count', 1)
  -- A repeat may raise the priority (a worse reading), never lower it.
  local old_prio = cur_fields[2]
  if PRIO_RANK[prio] < PRIO_RANK[old_prio] then
    update[#update + 1] = 'priority'
    update[#update + 1] = prio
    reindex(cur, cur_state, prio, old_prio, cur_fields[4])
  end
  redis.call('HSET', key, unpack(update))
  keep_until(cur, cur_state, now, cfg.retention)
  history_add(source, cur, 'deduplicated', atype, prio, now, cfg.hist_max, cfg.hist_age)
  return {'deduplicated', alert_flat(cur), group_of(cur), {'deduplicated'}}
end

if cfg.dedup and cur_state == 'resolved' and now - tonumber(cur_fields[3]) <= cfg.dedup_window then
  -- Flap protection: firing again soon after a resolve re-opens the same alert.
  local key = k('alert', cur)
  local epoch = redis.call('HINCRBY', key, 'epoch', 1)
  redis.call('HINCRBY', key, 'count', 1)
  redis.call('HSET', key, unpack(update))
  redis.call('HSET', key, 'priority', prio, 'severity', severity, 'escalation_level', 0,
    'opened_at', now,
    'acknowledged_by', '', 'acknowledged_at', '', 'ack_note', '',
    'resolved_at', '', 'resolved_by', '')
  reindex(cur, 'resolved', prio, cur_fields[2], cur_fields[4])
  transition(cur, 'reopen', now, cfg.retention, {})
  if quiet then
    transition(cur, 'activate', now, cfg.retention, {})
  end
  first_timer(cur, epoch)
  history_add(source, cur, 'reopened', atype, prio, now, cfg.hist_max, cfg.hist_age)
  return {'reopened', alert_flat(cur), group_of(cur), {'reopened'}}
end

-- A new alert: the fingerprint's next occurrence.
local occ = redis.call('HINCRBY', fpkey, 'occ', 1)
local id = base_id
if occ > 1 then id = base_id .. '-' .. occ end
while redis.call('EXISTS', k('alert', id)) == 1 do
  occ = redis.call('HINCRBY', fpkey, 'occ', 1)
  id = base_id .. '-' .. occ
end
redis.call('HSET', fpkey, 'id', id)

local events = {'created'}
local gid = ''
if gkh ~= '' then
  local gk = k('gkey', gkh)
  local cand = redis.call('HGET', gk, 'gid')
  if cand then
    local created = redis.call('HGET', k('group', cand), 'created')
    if created and now - tonumber(created) <= cfg.group_window
        and redis.call('ZCARD', k('gmembers', cand)) < cfg.group_max then
      gid = cand
      events[#events + 1] = 'grouped'
    end
  end
  if gid == '' then
    local seq = redis.call('HINCRBY', gk, 'seq', 1)
    gid = base_gid
    if seq > 1 then gid = base_gid .. '-' .. seq end
    while redis.call('EXISTS', k('group', gid)) == 1 do
      seq = redis.call('HINCRBY', gk, 'seq', 1)
      gid = base_gid .. '-' .. seq
    end
    redis.call('HSET', k('group', gid), 'id', gid, 'key', gtext, 'khash', gkh, 'created', now,
      'updated', now)
    redis.call('ZADD', k('groups'), now, gid)
    redis.call('HSET', gk, 'gid', gid)
  end
  redis.call('ZADD', k('gmembers', gid), now, id)
  redis.call('HSET', k('group', gid), 'updated', now)
end

local key = k('alert', id)
local state, rule = 'new', 'T0'
if quiet then state, rule = 'active', 'T1' end
redis.call('HSET', key, 'id', id, 'fp', fp, 'state', state, 'rule', rule, 'priority', prio,
  'severity', severity, 'source', source, 'type', atype, 'count', 1, 'first_seen', now,
  'group_id', gid, 'escalation_level', 0, 'epoch', 1, 'opened_at', now, unpack(update))
reindex(id, state, prio, nil, now)
keep_until(id, state, now, cfg.retention)
first_timer(id, 1)
history_add(source, id, 'created', atype, prio, now, cfg.hist_max, cfg.hist_age)
local group = false
if gid ~= '' then group = group_state(gid) end
return {'created', alert_flat(id), group, events}
