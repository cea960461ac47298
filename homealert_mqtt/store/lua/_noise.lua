-- _noise.lua: silences and inhibitions as the scripts keep them (homealert_mqtt/noise).
-- scripts.py prepends this file, after _lib.lua, to each script.
--
-- An alert is quiet (nobody is paged for it) while its `silenced_by` or `inhibited_by`
-- (JSON lists) is not empty; it has no escalation timer meanwhile. When the last entry
-- of both goes, an open, unacknowledged alert escalates from level 0 again.
--
-- Keys (store/keys.py): silence:<sid> (hash), smem:<sid> (set: alerts it silences),
-- silenced (set: alerts with a silence), silences (zset: sid by ends_at),
-- silence_due (zset: sid by its next change: start, else end), silence_ver (counter,
-- bumped by every change the service's caches must see), silence_clear (set: ended
-- silences whose retained topic awaits clearing).

-- Keys of inhibition: inhsrc (set: open alerts that are the source of a rule, recorded
-- by ingest.lua), inhtgt:<source id> (set: the alerts it inhibits), inh_ver (counter).

-- A JSON list field of alert `id` (`silenced_by`, `inhibited_by`) as a Lua list.
local function id_list(id, name)
  local raw = redis.call('HGET', k('alert', id), name)
  if not raw or raw == '' or raw == '[]' then
    return {}
  end
  return cjson.decode(raw)
end

-- The silence ids of alert `id`.
local function silenced_list(id)
  return id_list(id, 'silenced_by')
end

-- cjson writes an empty table as `{}`.
local function list_text(list)
  if #list == 0 then
    return '[]'
  end
  return cjson.encode(list)
end

local function silence_on(sid, now)
  local s = redis.call('HMGET', k('silence', sid), 'starts_at', 'ends_at')
  return s[1] ~= false and s[1] ~= nil and tonumber(s[1]) <= now and now < tonumber(s[2])
end

-- Escalation of a still pageable alert from level 0 again, later levels timed from now.
-- A new epoch: the delivery keys of the pages before it must not hold back the new ones,
-- and timers and batches of the old epoch are dropped as stale. Returns whether it did.
local function restart_escalation(id, now)
  local a = redis.call('HMGET', k('alert', id), 'state', 'epoch', 'group_id', 'flapping')
  if not PAGEABLE[a[1]] or a[4] == '1' then
    return false -- flapping: flap_settle.lua pages it once it has stayed put
  end
  if not a[3] or a[3] == '' then
    -- Alone in its batches: its level-0 page of before must not delay this one by a
    -- digest interval (schedule.lua). A group's digest pacing stays.
    redis.call('HDEL', k('gsent', '~' .. id), '0.0')
  end
  local epoch = string.format('%d', (tonumber(a[2]) or 1) + 1)
  local now_s = string.format('%d', now)
  redis.call('HSET', k('alert', id), 'epoch', epoch, 'escalation_level', '0', 'opened_at', now_s,
    'updated_at', now_s)
  set_timer(id, epoch, 0, 0, now_s)
  return true
end

-- Silence `sid` on alert `id`: its escalation stops. True when it had no silence before.
local function silence_add(id, sid)
  local list = silenced_list(id)
  for _, s in ipairs(list) do
    if s == sid then
      return false
    end
  end
  list[#list + 1] = sid
  table.sort(list)
  redis.call('HSET', k('alert', id), 'silenced_by', list_text(list))
  redis.call('SADD', k('smem', sid), id)
  redis.call('SADD', k('silenced'), id)
  cancel_timer(id)
  return #list == 1
end

-- Take `sid` off alert `id`. True when that was its last silence; escalation then starts
-- again at level 0 if the alert is still open and not acknowledged.
local function silence_remove(id, sid, now)
  redis.call('SREM', k('smem', sid), id)
  local list = silenced_list(id)
  local kept = {}
  for _, s in ipairs(list) do
    if s ~= sid then
      kept[#kept + 1] = s
    end
  end
  if #kept == 0 then
    redis.call('SREM', k('silenced'), id)
  end
  if #kept == #list then
    return false
  end
  redis.call('HSET', k('alert', id), 'silenced_by', list_text(kept))
  if #kept > 0 then
    return false
  end
  if #id_list(id, 'inhibited_by') == 0 then
    restart_escalation(id, now)
  end
  return true
end

-- Whether alert `src` is an open source of inhibition now.
local function source_open(src)
  if redis.call('SISMEMBER', k('inhsrc'), src) == 0 then
    return false
  end
  local state = redis.call('HGET', k('alert', src), 'state')
  return state and OPEN[state] or false
end

-- Inhibit alert `id` by source `src`: its escalation stops. True when it had no
-- inhibitor before.
local function inhibit_add(id, src)
  local list = id_list(id, 'inhibited_by')
  for _, s in ipairs(list) do
    if s == src then
      return false
    end
  end
  list[#list + 1] = src
  table.sort(list)
  redis.call('HSET', k('alert', id), 'inhibited_by', list_text(list))
  redis.call('SADD', k('inhtgt', src), id)
  cancel_timer(id)
  return #list == 1
end

-- Take source `src` off alert `id`. True when that was its last inhibitor; escalation
-- then starts again at level 0 if no silence is on it either.
local function inhibit_remove(id, src, now)
  local list = id_list(id, 'inhibited_by')
  local kept = {}
  for _, s in ipairs(list) do
    if s ~= src then
      kept[#kept + 1] = s
    end
  end
  if #kept == #list then
    return false
  end
  redis.call('HSET', k('alert', id), 'inhibited_by', list_text(kept))
  if #kept > 0 then
    return false
  end
  if #silenced_list(id) == 0 then
    restart_escalation(id, now)
  end
  return true
end

local function is_quiet(id)
  return #silenced_list(id) > 0 or #id_list(id, 'inhibited_by') > 0
end

-- An acknowledged alert back to `active` (T6): its acknowledgement went stale, or a
-- repeat was more urgent. Escalation from level 0 (of its priority now), later levels
-- timed from now, unless a silence or an inhibition holds it (their end restarts it).
-- `event` names it in the history. Returns whether it changed.
local function unacknowledge(id, now, cfg, event)
  local to = transition(id, 'unack', now, cfg.retention,
    {'acknowledged_by', '', 'acknowledged_at', '', 'ack_note', ''})
  if not to then
    return false
  end
  if not is_quiet(id) then
    restart_escalation(id, now)
  end
  local a = redis.call('HMGET', k('alert', id), 'source', 'type', 'priority')
  history_add(a[1], id, event, a[2], a[3], now, string.format('%d', now), cfg)
  return true
end
