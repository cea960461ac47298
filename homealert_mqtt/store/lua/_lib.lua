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
-- models.TRANSITIONS in Python; tests compare the two. Built when first needed: building
-- its eleven tables took ~2 us in every script run, and a new alert or a repeat needs none.
local TRANSITIONS

local function next_state(action, state)
  TRANSITIONS = TRANSITIONS or {
    activate = {rule = 'T1', from = {new = true}, to = 'active'},
    escalate = {rule = 'T2', from = {new = true, active = true, escalated = true}, to = 'escalated'},
    ack = {rule = 'T3', from = {new = true, active = true, escalated = true}, to = 'acknowledged'},
    resolve = {rule = 'T4', from = {new = true, active = true, acknowledged = true, escalated = true},
      to = 'resolved'},
    reopen = {rule = 'T5', from = {resolved = true}, to = 'new'},
    unack = {rule = 'T6', from = {acknowledged = true}, to = 'active'},
  }
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
  -- A number argument would cost Redis a '%.17g': string.format('%d') is far cheaper.
  redis.call('ZADD', k('retention'), string.format('%d', now + retention[state]), id)
end

-- The settings the service passes (AlertStore.lua_settings): integers in a fixed order,
-- left as strings. cjson turned every number into a double through strtod, which cost more
-- than all else of the settings' work; Lua converts the few a call does arithmetic on.
-- Retention is in ms per state, the windows and the age in ms.
local function parse_settings(text)
  local new, active, acked, escalated, resolved, dedup, dedup_window, group_window, group_max,
    hist_max, hist_age = string.match(text,
      '^(%d+) (%d+) (%d+) (%d+) (%d+) ([01]) (%d+) (%d+) (%d+) (%d+) (%d+)$')
  if not new then
    error('bad settings: ' .. text)
  end
  return {
    retention = {new = new, active = active, acknowledged = acked, escalated = escalated,
      resolved = resolved},
    dedup = dedup == '1', dedup_window = dedup_window, group_window = group_window,
    group_max = group_max, hist_max = hist_max, hist_age = hist_age,
  }
end

-- History entry ids follow the service's clock, as `at` and the age trim do (with '*' they
-- would follow Redis's, and an injected or skewed clock would trim everything). XADD needs
-- them increasing: a clock that went back reuses the last millisecond. Returns the id after
-- `last` (a stream's last id, or nil) at `now`, and whether it opens a new millisecond.
local function history_id(last, now, now_s)
  if last then
    local ms, seq = string.match(last, '^(%d+)-(%d+)$')
    if tonumber(ms) >= now then
      return ms .. '-' .. string.format('%d', tonumber(seq) + 1), false
    end
  end
  return now_s .. '-0', true
end

local function stream_last(key)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  return last and last[1]
end

local function history_xadd(call, key, max_entries, eid, id, event, atype, prio, at)
  return call('XADD', key, 'MAXLEN', '~', max_entries, eid,
    'id', id, 'event', event, 'type', atype, 'priority', prio, 'at', at)
end

-- cfg: the settings (hist_max, hist_age).
local function history_add(source, id, event, atype, prio, now, now_s, cfg)
  local key, last_ids = k('history', source), k('history_last')
  -- Each stream's last id is also kept in one hash: far cheaper to read than the stream.
  local last = redis.call('HGET', last_ids, source)
  if not last then -- a new source, or one whose stream predates the hash
    last = stream_last(key)
    redis.call('SADD', k('history_sources'), source)
  end
  local eid, new_ms = history_id(last, now, now_s)
  if type(history_xadd(redis.pcall, key, cfg.hist_max, eid, id, event, atype, prio, now_s))
      == 'table' then
    -- Refused: the stream is ahead of the hash (a replica of an older version wrote to it).
    eid, new_ms = history_id(stream_last(key), now, now_s)
    history_xadd(redis.call, key, cfg.hist_max, eid, id, event, atype, prio, now_s)
  end
  -- The age limit only moves when a new millisecond does: the call that opened this one
  -- trimmed at the same limit (or a later one, when the clock went back), and entries only
  -- ever join at the end.
  if new_ms then
    redis.call('XTRIM', key, 'MINID', '~', string.format('%d', now - cfg.hist_age))
  end
  redis.call('HSET', last_ids, source, eid)
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
  -- Strings all along (tonumber() cost more than the rest): revs are integers without
  -- leading zeros, so the longer is the larger, and equally long ones compare as text.
  local rev = t[1] .. string.sub('00000' .. t[2], -6)
  if last and (#last > #rev or (#last == #rev and last >= rev)) then
    rev = string.format('%d', tonumber(last) + 1) -- a double: exact below 2^53 (year 2255)
  end
  return rev
end

-- An alert travels as its hash does in an HGETALL reply, a flat list {field, value, ...}
-- (every value a string): turning it into a table {field = value} and back cost more than
-- the few lookups that field() makes in it.

-- The index of field `name`'s value in alert `a`, or nil when it has none.
local function field_at(a, name)
  for i = 1, #a, 2 do
    if a[i] == name then
      return i + 1
    end
  end
  return nil
end

-- The value of field `name` of alert `a`, or nil.
local function field(a, name)
  local i = field_at(a, name)
  return i and a[i]
end

-- The alert as it is stored, or false when it is gone.
local function alert_read(id)
  local a = redis.call('HGETALL', k('alert', id))
  if #a == 0 then
    return false
  end
  return a
end

-- The alert for a script's reply (see alert_read), with the next rev (next_rev).
local function alert_snapshot(id)
  local a = alert_read(id)
  if a then
    local i = field_at(a, 'rev')
    local rev = next_rev(i and a[i])
    if not i then
      a[#a + 1] = 'rev'
      i = #a + 1
    end
    a[i] = rev
    redis.call('HSET', k('alert', id), 'rev', rev)
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

-- The group of alert `a` (see alert_read), its `updated` moved to the alert's change; false
-- when the alert is in no group.
local function group_of(a)
  local gid = field(a, 'group_id')
  if gid and gid ~= '' then
    redis.call('HSET', k('group', gid), 'updated', field(a, 'updated_at'))
    return group_state(gid)
  end
  return false
end
