-- Shared by every script: scripts.py prepends this file to each one before loading it.
--
-- KEYS[1] is always the key prefix with its hash tag (e.g. "{homealert}"); every other
-- key is built from it by k(), mirroring store/keys.py.

local P = KEYS[1]
-- k('open') or k('alert', id): no key the scripts use has more parts. Concatenated, not
-- table.concat({...}): a table per key was a measurable share of a script's time.
local function k(kind, name)
  if name then
    return P .. ':' .. kind .. ':' .. name
  end
  return P .. ':' .. kind
end

local OPEN = {new = true, active = true, acknowledged = true, escalated = true}

-- The transition table (rule id, action, from-states, to-state). The same table is
-- models.TRANSITIONS in Python; tests compare the two.
local TRANSITIONS = {
  activate = {rule = 'T1', from = {new = true}, to = 'active'},
  escalate = {rule = 'T2', from = {new = true, active = true, escalated = true}, to = 'escalated'},
  ack = {rule = 'T3', from = {new = true, active = true, escalated = true}, to = 'acknowledged'},
  resolve = {rule = 'T4', from = {new = true, active = true, acknowledged = true, escalated = true}, to = 'resolved'},
  reopen = {rule = 'T5', from = {resolved = true}, to = 'new'},
}

local function next_state(action, state)
  local t = TRANSITIONS[action]
  if t and t.from[state] then
    return t.to, t.rule
  end
  return nil, nil
end

-- Keep the index sets in line with an alert's state and priority.
local function reindex(id, state, prio, old_prio, first_seen)
  if old_prio and old_prio ~= '' and old_prio ~= prio then
    redis.call('SREM', k('prio', old_prio), id)
  end
  if OPEN[state] then
    redis.call('ZADD', k('open'), first_seen, id)
    redis.call('SADD', k('prio', prio), id)
  else
    redis.call('ZREM', k('open'), id)
    redis.call('SREM', k('prio', prio), id)
  end
  if state == 'acknowledged' then
    redis.call('SADD', k('acked'), id)
  else
    redis.call('SREM', k('acked'), id)
  end
  if state == 'escalated' then
    redis.call('SADD', k('escalated'), id)
  else
    redis.call('SREM', k('escalated'), id)
  end
end

-- retention: a table state -> milliseconds
local function keep_until(id, state, now, retention)
  redis.call('ZADD', k('retention'), now + retention[state], id)
end

local function parse_retention(json)
  return cjson.decode(json)
end

local function history_add(source, id, event, atype, prio, now, max_entries, max_age)
  local key = k('history', source)
  -- Entry ids follow the service's clock, as `at` and the age trim below do (with '*'
  -- they would follow Redis's, and an injected or skewed clock would trim everything).
  -- XADD needs them increasing: a clock that went back reuses the last millisecond.
  local ms, seq = now, 0
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if last then
    local last_ms, last_seq = string.match(last[1], '^(%d+)-(%d+)$')
    if tonumber(last_ms) >= ms then
      ms, seq = tonumber(last_ms), tonumber(last_seq) + 1
    end
  end
  redis.call('XADD', key, 'MAXLEN', '~', max_entries, string.format('%d-%d', ms, seq),
    'id', id, 'event', event, 'type', atype, 'priority', prio, 'at', now)
  redis.call('XTRIM', key, 'MINID', '~', tostring(now - max_age))
  redis.call('SADD', k('history_sources'), source)
end

local PRIO_RANK = {P1 = 1, P2 = 2, P3 = 3, P4 = 4, P5 = 5}

-- A group's state as a table {id, key, created, updated, state, highest, members = {ids...},
-- last_digest}, or false when the group is gone. Group state: active while any open member
-- is not acknowledged, acknowledged while every open member is, resolved when none is open.
local function group_state(gid)
  local g = redis.call('HMGET', k('group', gid), 'key', 'created', 'updated', 'last_digest')
  if not g[1] then
    return false
  end
  local members = redis.call('ZRANGE', k('gmembers', gid), 0, -1)
  local best_open, best_any = nil, nil
  local any_open, any_unacked = false, false
  for _, id in ipairs(members) do
    local a = redis.call('HMGET', k('alert', id), 'state', 'priority')
    if a[1] then
      local rank = PRIO_RANK[a[2]] or 5
      if not best_any or rank < best_any then best_any = rank end
      if OPEN[a[1]] then
        any_open = true
        if a[1] ~= 'acknowledged' then any_unacked = true end
        if not best_open or rank < best_open then best_open = rank end
      end
    end
  end
  local state = 'resolved'
  if any_unacked then state = 'active' elseif any_open then state = 'acknowledged' end
  local best = best_open or best_any
  return {id = gid, key = g[1], created = g[2], updated = g[3], state = state,
    highest = best and ('P' .. best) or '', members = members, last_digest = g[4] or ''}
end

-- Each snapshot of an alert that a script hands out gets a higher `rev`: scripts run one at
-- a time, so a higher rev is a later state, and the publisher drops a snapshot older than
-- one it already published (writers race there). Redis's clock in microseconds, and never
-- less than the last rev + 1 (`last`: nil when the alert has none yet): a Redis that lost
-- its data (no AOF) and re-creates an alert under the same id still counts upwards.
local function next_rev(last)
  local t = redis.call('TIME')
  local rev = tonumber(t[1]) * 1000000 + tonumber(t[2])
  last = tonumber(last or '0') or 0
  if last >= rev then rev = last + 1 end
  return string.format('%d', rev) -- exact for any integer below 2^63, and cheap ('%.0f' is not)
end

-- HSET of a table {field = value}.
local function hset(key, fields)
  local flat = {}
  for name, value in pairs(fields) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  redis.call('HSET', key, unpack(flat))
end

-- The alert's hash as a table {field = value} (every value a string, as the service reads
-- it), or false when it is gone.
local function alert_read(id)
  local flat = redis.call('HGETALL', k('alert', id))
  if #flat == 0 then
    return false
  end
  local a = {}
  for i = 1, #flat, 2 do
    a[flat[i]] = flat[i + 1]
  end
  return a
end

-- The alert for a script's reply (see alert_read), with the next rev (next_rev).
local function alert_snapshot(id)
  local a = alert_read(id)
  if a then
    a.rev = next_rev(a.rev)
    redis.call('HSET', k('alert', id), 'rev', a.rev)
  end
  return a
end

-- An alert has at most one pending escalation timer, "<id>|<epoch>|<level>|<round>"
-- (round counts `repeat` re-sends of the last level). Its member is kept in the alert's
-- `timer` field so that ack, resolve and expiry can cancel it.
local function timer_member(id, epoch, level, round)
  return id .. '|' .. epoch .. '|' .. level .. '|' .. round
end

local function set_timer(id, epoch, level, round, due)
  local member = timer_member(id, epoch, level, round)
  local old = redis.call('HGET', k('alert', id), 'timer')
  if old and old ~= member then
    redis.call('ZREM', k('timers'), old)
  end
  redis.call('ZADD', k('timers'), due, member)
  redis.call('HSET', k('alert', id), 'timer', member, 'next_escalation_at', due)
end

local function cancel_timer(id)
  local old = redis.call('HGET', k('alert', id), 'timer')
  if old then
    redis.call('ZREM', k('timers'), old)
    redis.call('HDEL', k('alert', id), 'timer')
  end
  redis.call('HSET', k('alert', id), 'next_escalation_at', '')
end

local function split(text, sep)
  local out = {}
  for part in string.gmatch(text, '([^' .. sep .. ']+)') do
    out[#out + 1] = part
  end
  return out
end

-- Open, not acknowledged, and still the same occurrence: the only alerts we page for.
local PAGEABLE = {new = true, active = true, escalated = true}

local STOPS_ESCALATION = {acknowledged = true, resolved = true}

-- Apply `action` to alert `id` through the transition table, updating indexes and
-- retention. `extra` is a flat list of more fields to set. Returns the new state and
-- rule, or nil and the current state (false when the alert does not exist).
local function transition(id, action, now, retention, extra)
  local key = k('alert', id)
  local a = redis.call('HMGET', key, 'state', 'priority', 'first_seen')
  if not a[1] then
    return nil, false
  end
  local to, rule = next_state(action, a[1])
  if not to then
    return nil, a[1]
  end
  local set = {'state', to, 'updated_at', now, 'rule', rule}
  for i = 1, #extra do
    set[#set + 1] = extra[i]
  end
  redis.call('HSET', key, unpack(set))
  if STOPS_ESCALATION[to] then
    cancel_timer(id)
  end
  if to == 'resolved' and redis.call('EXISTS', k('paged', id)) == 1 then
    -- Whoever was paged hears that it is over (sent by the escalation engine).
    redis.call('ZADD', k('notices'), now, id .. '|' .. redis.call('HGET', key, 'epoch'))
  end
  reindex(id, to, a[2], nil, a[3])
  keep_until(id, to, now, retention)
  return to, rule
end

-- The group of alert `a` (an alert_read table), its `updated` moved to the alert's change;
-- false when the alert is in no group.
local function group_of(a)
  local gid = a.group_id
  if gid and gid ~= '' then
    redis.call('HSET', k('group', gid), 'updated', a.updated_at)
    return group_state(gid)
  end
  return false
end
