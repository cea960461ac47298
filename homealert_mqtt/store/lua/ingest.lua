-- ingest.lua: validated alerts, each deduplicated, grouped and stored in one atomic
-- step, in order. One call takes a chunk of a batch: per call, Redis and redis-py each
-- pay a fixed cost that would otherwise be paid per alert.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)
-- ARGV[2]  settings (see parse_settings in _lib.lua)
-- ARGV[3]  a JSON array of alerts, each a JSON array (one argument costs the service far
--          less to send than 19) in this order:
--   [1] fingerprint   [2] base id (topic-safe, without occurrence suffix)
--   [3] status: firing|resolved
--   [4] source   [5] type   [6] severity ('' = none)   [7] priority   [8] message
--   [9] attributes JSON (a string)   [10] device timestamp (ms) as a string, or ''
--   [11] group key hash ('' = no grouping)   [12] group key text   [13] base group id
--   [14] MQTT client id ('' = no redelivery check)   [15] packet id ('0' = none)
--   [16] dup flag (bool)   [17] payload digest
--   [18] quiet start (bool): true when level 0 reaches nobody, so the alert starts `active`
--        (T1) with level 1's timer instead of a level-0 timer
--   [19] level 1's delay (ms), or null when the policy has one level
--   [20] partial resolve, or null: for a resolve that leaves out fingerprint fields,
--        {fields = {{alert hash field, value}, ...}, attrs = {{attributes key, JSON
--        value}, ...}, scan = newest open alerts looked at, max = most resolved}; see
--        resolve_partial below
--   [21] ids of the silences the service found on for the alert (a JSON list, often
--        empty): those still on silence it (no escalation timer; see _noise.lua)
--   [22] ids of the open alerts the service found inhibiting it (a JSON list, often
--        empty): those still open sources inhibit it (as silences do)
--   [23] source (bool): the alert matches an inhibit rule's source matchers
--   [24] hold-down (ms): level 0 is due this long after opening (0: at once)
--   [25] auto-resolve (ms): resolves itself when not repeated for this long (0: never)
--   [26] latch (bool): `status: resolved` only clears it (cleared_at, event `cleared`)
--   [27] flapping: re-openings that make it flap (0: never)   [28] its window (ms)
--
-- Returns a JSON array with, per alert in order, an object {outcome, alert, group, events}:
--   outcome: created | deduplicated | reopened | resolved | cleared | redelivered |
--            no_open_alert |
--            failed (an error that is not Redis refusing writes for now; `reason` says it)
--   alert: the alert's fields as a flat list {name, value, ...} (see alert_read in
--          _lib.lua), or false
--   group: the group state (see group_state in _lib.lua), or false
--   events: names for <base>/event ("created", "grouped", ...); none is `{}` (cjson
--           writes every empty table as an object)
--   also: only for a partial resolve that resolved more than one alert: the others, as
--         {alert, group} objects

local now_s = ARGV[1]
local now = tonumber(now_s)
local cfg = parse_settings(ARGV[2])

-- Equal JSON values, as cjson decodes them (tables compared key by key).
local function same_value(a, b)
  if type(a) ~= type(b) then
    return false
  end
  if type(a) ~= 'table' then
    return a == b
  end
  for key, value in pairs(a) do
    if not same_value(value, b[key]) then
      return false
    end
  end
  for key in pairs(b) do
    if a[key] == nil then
      return false
    end
  end
  return true
end

-- Whether the stored alert `id` has every field and attribute `spec` gives.
local function matches_partial(id, spec)
  local key = k('alert', id)
  if #spec.fields > 0 then
    local names = {}
    for i, pair in ipairs(spec.fields) do
      names[i] = pair[1]
    end
    local values = redis.call('HMGET', key, unpack(names))
    for i, pair in ipairs(spec.fields) do
      if values[i] ~= pair[2] then
        return false
      end
    end
  end
  if #spec.attrs > 0 then
    local ok, attributes = pcall(cjson.decode, redis.call('HGET', key, 'attributes') or '')
    if not ok or type(attributes) ~= 'table' then
      return false
    end
    for _, pair in ipairs(spec.attrs) do
      if not same_value(attributes[pair[1]], pair[2]) then
        return false
      end
    end
  end
  return true
end

-- A resolve that leaves out fingerprint fields ({"source": "basement", "type":
-- "water_leak", "status": "resolved"} with severity in the fingerprint): every open
-- alert with the fields it gives is resolved, newest first. Bounded: the `scan` newest
-- open alerts are looked at, at most `max` resolved. The check and the resolve are this
-- one script, so an ack or another resolve cannot slip in between.
local function resolve_partial(spec, source)
  local done = {}
  for _, id in ipairs(redis.call('ZREVRANGE', k('open'), 0, spec.scan - 1)) do
    if #done >= spec.max then
      break
    end
    if matches_partial(id, spec) then
      local cur = redis.call('HMGET', k('alert', id), 'priority', 'type')
      local to = transition(id, 'resolve', now, cfg.retention,
        {'resolved_at', now, 'resolved_by', source, 'last_seen', now})
      if to then
        history_add(source, id, 'resolved', cur[2], cur[1], now, now_s, cfg)
        local a = alert_snapshot(id)
        done[#done + 1] = {alert = a, group = group_of(a)}
      end
    end
  end
  if #done == 0 then
    return {outcome = 'no_open_alert', alert = false, group = false, events = {}}
  end
  local first = table.remove(done, 1)
  local reply = {outcome = 'resolved', alert = first.alert, group = first.group,
    events = {'resolved'}}
  if #done > 0 then
    reply.also = done
  end
  return reply
end

-- Noise control: of the silences (or inhibiting sources) the service matched, those
-- still live now (`live(name, now)`: a silence may have ended, a source resolved since),
-- sorted; nil when none is.
local function still_live(names, live)
  if names == nil or names == cjson.null or #names == 0 then
    return nil
  end
  local found = {}
  for _, name in ipairs(names) do
    if live(name, now) then
      found[#found + 1] = name
    end
  end
  if #found == 0 then
    return nil
  end
  table.sort(found)
  return found
end

-- Records inhibition on alert `id`, new or re-opened (its `inhibited_by` field is set
-- by the caller's HSET), and the alert as a source when it is one.
local function mark_inhibition(id, inhibitors, source)
  for _, src in ipairs(inhibitors or {}) do
    redis.call('SADD', k('inhtgt', src), id)
  end
  if source and redis.call('SADD', k('inhsrc'), id) == 1 then
    redis.call('INCR', k('inh_ver'))
  end
end

-- Noise control: a repeat more urgent than its acknowledged alert re-opens the
-- acknowledgement (T6: active, escalation from level 0 of the new priority's policy).
local function raise_acknowledged(id, state, prio, old_prio)
  if state ~= 'acknowledged' or PRIO_RANK[prio] >= PRIO_RANK[old_prio] then
    return false
  end
  return unacknowledge(id, now, cfg, 'priority_raised')
end

-- alerts.types flapping: alert `id` re-opened now. Whether it flaps: re-opened `n` times
-- within `ms` (or flapping already); if so its flap ends (flap_settle.lua) once it has
-- stayed put for a whole window.
local function flap_check(id, n, ms)
  if n <= 0 then
    return false
  end
  local key = k('flaps', id)
  redis.call('ZADD', key, now_s, now_s)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%d', now - ms))
  redis.call('PEXPIRE', key, string.format('%d', ms))
  if redis.call('HGET', k('alert', id), 'flapping') ~= '1'
      and redis.call('ZCARD', key) < n then
    return false
  end
  redis.call('ZADD', k('flapq'), string.format('%d', now + ms), id)
  return true
end

-- A flapping alert resolved: it has not stayed put, and nobody hears of it.
local function flap_resolved(id, epoch, ms)
  if redis.call('HGET', k('alert', id), 'flapping') == '1' then
    redis.call('ZADD', k('flapq'), string.format('%d', now + ms), id)
    redis.call('ZREM', k('notices'), id .. '|' .. epoch)
  end
end

-- alerts.types: an open alert not repeated for `ms` resolves itself (auto_resolve.lua);
-- every repeat pushes the deadline back.
local function arm_auto_resolve(id, ms)
  if ms > 0 then
    redis.call('ZADD', k('autores'), string.format('%d', now + ms), id)
  end
end

-- alerts.types latch: a device's resolve of alert `id` only records when it cleared.
local function clear_latched(id, source, atype, cur_fields)
  redis.call('HSET', k('alert', id), 'cleared_at', now_s, 'updated_at', now_s, 'last_seen',
    now_s)
  history_add(source, id, 'cleared', atype, cur_fields[2], now, now_s, cfg)
  return alert_snapshot(id)
end

-- Records the silences (from still_live) on alert `id`, new or re-opened; its
-- `silenced_by` field is set by the caller's HSET.
local function mark_silenced(id, live)
  if not live then
    redis.call('SREM', k('silenced'), id)
    return
  end
  for _, sid in ipairs(live) do
    redis.call('SADD', k('smem', sid), id)
  end
  redis.call('SADD', k('silenced'), id)
end

-- One alert; returns its reply (a table).
local function ingest_one(request)
  local fp, base_id, status, source, atype, severity, prio, message, attributes, ts,
    gkh, gtext, base_gid, client, mid, dup, digest, quiet, next_delay, partial, sils, inhs,
    inh_source, hold, auto_ms, latch, flap_n, flap_ms = unpack(request)
  hold, auto_ms = tonumber(hold) or 0, tonumber(auto_ms) or 0
  flap_n, flap_ms = tonumber(flap_n) or 0, tonumber(flap_ms) or 0
  local flapping = false
  if next_delay == cjson.null then next_delay = nil end
  local silenced, inhibited = nil, nil

  local function reply(outcome, alert, group, events)
    return {outcome = outcome, alert = alert, group = group, events = events}
  end

  -- The first escalation step of a new or re-opened alert: level 0 at once, or, when
  -- level 0 reaches nobody, level 1 when it is due (the alert is already active). Returns
  -- the alert's `timer` (nil: none) and `next_escalation_at`, for the caller's one HSET.
  -- Neither alert has a timer to cancel: a new one never had one, and resolving cancelled a
  -- re-opened one's.
  local function first_timer(id, epoch)
    if silenced or inhibited or flapping then
      return nil, '' -- quiet: the silence's end (the source's resolve, the flap's end)
    end
    local level, due = '0', now_s
    if hold > 0 then
      due = string.format('%d', now + hold) -- held down: nobody is paged before
    end
    if quiet then
      if not next_delay then
        return nil, ''
      end
      level, due = '1', string.format('%d', now + next_delay)
    end
    local member = timer_member(id, epoch, level, '0')
    redis.call('ZADD', k('timers'), due, member)
    return member, due
  end

  local fpkey = k('fp', fp)

  -- A QoS 1 message the broker sends again (DUP set) after we committed it but died
  -- before the PUBACK: change nothing, answer with the state as it is.
  if client ~= '' and mid ~= '0' then
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

  if status == 'resolved' and partial and partial ~= cjson.null then
    return resolve_partial(partial, source)
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
    if latch and cur_state and OPEN[cur_state] then
      local a = clear_latched(cur, source, atype, cur_fields)
      return reply('cleared', a, group_of(a), {'cleared'})
    end
    if cur_state and OPEN[cur_state] then
      transition(cur, 'resolve', now, cfg.retention,
        {'resolved_at', now, 'resolved_by', source, 'last_seen', now})
      flap_resolved(cur, cur_fields[6], flap_ms)
      history_add(source, cur, 'resolved', atype, cur_fields[2], now, now_s, cfg)
      local a = alert_snapshot(cur)
      return reply('resolved', a, group_of(a), {'resolved'})
    end
    return reply('no_open_alert', false, false, {})
  end

  -- What a repeat or a re-opening changes, as HSET's list of fields and values (strings: a
  -- number costs Redis a '%.17g').
  local function changes()
    return {'last_seen', now_s, 'updated_at', now_s, 'message', message,
      'attributes', attributes, 'timestamp', ts,
      'count', string.format('%d', (tonumber(cur_fields[5]) or 0) + 1),
      'rev', next_rev(cur_fields[7])}
  end

  local function extend(list, more)
    for i = 1, #more do
      list[#list + 1] = more[i]
    end
    return list
  end

  if cfg.dedup and cur_state and OPEN[cur_state] then
    local update = changes()
    -- A repeat may raise the priority (a worse reading), never lower it.
    local old_prio = cur_fields[2]
    if PRIO_RANK[prio] < PRIO_RANK[old_prio] then
      extend(update, {'priority', prio})
      reindex(cur, cur_state, prio, old_prio, cur_fields[4])
    end
    redis.call('HSET', k('alert', cur), unpack(update))
    keep_until(cur, cur_state, now, cfg.retention)
    history_add(source, cur, 'deduplicated', atype, prio, now, now_s, cfg)
    arm_auto_resolve(cur, auto_ms)
    local events = {'deduplicated'}
    if raise_acknowledged(cur, cur_state, prio, old_prio) then
      events[2] = 'priority_raised'
    end
    local a = alert_read(cur)
    return reply('deduplicated', a, group_of(a), events)
  end

  if cfg.dedup and cur_state == 'resolved'
      and now - tonumber(cur_fields[3]) <= tonumber(cfg.dedup_window) then
    -- Flap protection: firing again soon after a resolve re-opens the same alert.
    local epoch = string.format('%d', (tonumber(cur_fields[6]) or 0) + 1)
    silenced, inhibited = still_live(sils, silence_on), still_live(inhs, source_open)
    flapping = flap_check(cur, flap_n, flap_ms)
    local timer, next_at = first_timer(cur, epoch)
    local update = extend(changes(), {'epoch', epoch, 'priority', prio, 'severity', severity,
      'escalation_level', '0', 'opened_at', now_s, 'acknowledged_by', '', 'acknowledged_at', '',
      'ack_note', '', 'resolved_at', '', 'resolved_by', '', 'next_escalation_at', next_at,
      'silenced_by', silenced and cjson.encode(silenced) or '[]',
      'inhibited_by', inhibited and cjson.encode(inhibited) or '[]',
      'flapping', flapping and '1' or '0'})
    if timer then
      extend(update, {'timer', timer})
    end
    redis.call('HSET', k('alert', cur), unpack(update))
    mark_silenced(cur, silenced)
    mark_inhibition(cur, inhibited, inh_source)
    arm_auto_resolve(cur, auto_ms)
    reindex(cur, 'resolved', prio, cur_fields[2], cur_fields[4])
    transition(cur, 'reopen', now, cfg.retention, {})
    if quiet then
      transition(cur, 'activate', now, cfg.retention, {})
    end
    history_add(source, cur, 'reopened', atype, prio, now, now_s, cfg)
    local a = alert_read(cur)
    return reply('reopened', a, group_of(a), silenced and {'reopened', 'silenced'} or {'reopened'})
  end

  -- A new alert: the fingerprint's next occurrence, in the group its key names (a new one
  -- when that group's window is over or it is full).
  local occ = (tonumber(fp_state[2]) or 0) + 1
  local id = base_id
  if occ > 1 then id = base_id .. '-' .. occ end

  local events = {'created'}
  local gid, group, gk, gseq = '', false, nil, nil
  if gkh ~= '' then
    gk = k('gkey', gkh)
    local gkey_state = redis.call('HMGET', gk, 'gid', 'seq')
    local cand = gkey_state[1]
    if cand then
      local created = redis.call('HGET', k('group', cand), 'created')
      if created and now - tonumber(created) <= tonumber(cfg.group_window)
          and redis.call('ZCARD', k('gmembers', cand)) < tonumber(cfg.group_max) then
        gid = cand
        events[2] = 'grouped'
      end
    end
    if gid == '' then
      gseq = (tonumber(gkey_state[2]) or 0) + 1
      gid = base_gid
      if gseq > 1 then gid = base_gid .. '-' .. gseq end
    end
  end

  -- Another fingerprint (or group key) may have taken the id: the next free one instead.
  local function free(kind, base, seq, name)
    while redis.call('EXISTS', k(kind, name)) == 1 do
      seq = seq + 1
      name = base .. '-' .. seq
    end
    return name, seq
  end
  -- One EXISTS for both ids: each is looked at on its own only when one of them is taken.
  local taken
  if gseq then
    taken = redis.call('EXISTS', k('alert', id), k('group', gid))
  else
    taken = redis.call('EXISTS', k('alert', id))
  end
  if taken > 0 then
    id, occ = free('alert', base_id, occ, id)
    if gseq then gid, gseq = free('group', base_gid, gseq, gid) end
  end
  redis.call('HSET', fpkey, 'id', id, 'occ', string.format('%d', occ))

  if gseq then
    redis.call('HSET', k('group', gid), 'id', gid, 'key', gtext, 'khash', gkh, 'created', now_s,
      'updated', now_s)
    redis.call('ZADD', k('groups'), now_s, gid)
    redis.call('HSET', gk, 'gid', gid, 'seq', string.format('%d', gseq))
    -- What group_state(gid) would read back: this alert is the only member, open and not
    -- acknowledged.
    group = {id = gid, key = gtext, created = now_s, updated = now_s, state = 'active',
      highest = prio, members = {id}, last_digest = ''}
  elseif gid ~= '' then
    redis.call('HSET', k('group', gid), 'updated', now_s)
  end
  if gid ~= '' then
    redis.call('ZADD', k('gmembers', gid), now_s, id)
  end

  local state, rule = 'new', 'T0'
  if quiet then state, rule = 'active', 'T1' end
  silenced, inhibited = still_live(sils, silence_on), still_live(inhs, source_open)
  local timer, next_at = first_timer(id, '1')
  -- Strings as they are stored: the reply is this list, not a read-back.
  local alert = {'id', id, 'fp', fp, 'state', state, 'rule', rule, 'priority', prio,
    'severity', severity, 'source', source, 'type', atype, 'message', message,
    'attributes', attributes, 'timestamp', ts, 'count', '1', 'first_seen', now_s,
    'last_seen', now_s, 'updated_at', now_s, 'opened_at', now_s, 'group_id', gid,
    'escalation_level', '0', 'epoch', '1', 'next_escalation_at', next_at,
    'rev', next_rev(nil)} -- the id has no hash yet (EXISTS above), so no earlier rev
  if timer then
    extend(alert, {'timer', timer})
  end
  if silenced then
    extend(alert, {'silenced_by', cjson.encode(silenced)})
    mark_silenced(id, silenced)
    events[#events + 1] = 'silenced'
  end
  if inhibited then
    extend(alert, {'inhibited_by', cjson.encode(inhibited)})
  end
  if inhibited or inh_source then
    mark_inhibition(id, inhibited, inh_source)
  end
  arm_auto_resolve(id, auto_ms)
  redis.call('HSET', k('alert', id), unpack(alert))
  -- reindex() for a new id: in no index yet, so nothing to take out of acked or escalated.
  redis.call('ZADD', k('open'), now_s, id)
  redis.call('SADD', k('prio', prio), id)
  keep_until(id, state, now, cfg.retention)
  history_add(source, id, 'created', atype, prio, now, now_s, cfg)
  if gid ~= '' and not group then
    group = group_state(gid)
  end
  return reply('created', alert, group, events)
end

-- Errors Redis gives when it cannot write now (memory, a read-only replica, a save that
-- failed, loading, busy): the whole call fails and the service retries the chunk. The
-- same list as TRANSIENT_CODES in scripts.py.
local TRANSIENT = {OOM = true, READONLY = true, MISCONF = true, MASTERDOWN = true,
  NOREPLICAS = true, LOADING = true, BUSY = true, TRYAGAIN = true, CLUSTERDOWN = true}

local replies = {}
for i, request in ipairs(cjson.decode(ARGV[3])) do
  local ok, result = pcall(ingest_one, request)
  if ok then
    replies[i] = result
  else
    -- redis.call raises a table {err = 'OOM ...'} on Redis 7, a string
    -- '@user_script: 1: -OOM ...' on 6.2; a bug here raises a string.
    local message = type(result) == 'table' and tostring(result.err) or tostring(result)
    local code = string.match(message, '^%-?(%u+) ') or string.match(message, ': %-(%u+) ')
    if TRANSIENT[code] then
      error(result)
    end
    -- Anything else would fail the same way on every retry and hold up every alert
    -- behind this one: answer it as failed instead (what it wrote so far stays, as
    -- Redis does not undo a script's writes).
    replies[i] = {outcome = 'failed', alert = false, group = false, events = {},
      reason = message}
  end
end
return cjson.encode(replies)
