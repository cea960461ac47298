-- silence_end.lua: the silences' timers: start the due ones, end the over ones (or one
-- that is expired early).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] limit   ARGV[3] silence id to end now ('' = only
--          what is due)
--
-- Claimed atomically: with several replicas, or after a kill -9, each start and end is
-- taken once. Ending a silence takes it off every alert it silenced, in this same step:
-- an open, unacknowledged alert left without a silence starts escalating at level 0
-- (a level-0 timer due now; the escalation engine pages it). The ended silence's
-- retained topic is cleared by the service (silence_clear). A schedule's silence
-- (`schedule:<name>`) ended early leaves wskip:<id> until its window's end.
--
-- Returns JSON {started = {ids}, ended = {ids}, alerts = {{alert, event}}, next = ms or
-- false} (next: when the next silence starts or ends; alert as in ingest.lua).

local now = tonumber(ARGV[1])
local started, ended, alerts = {}, {}, {}

local function finish(sid)
  local members = redis.call('SMEMBERS', k('smem', sid))
  for _, id in ipairs(members) do
    if silence_remove(id, sid, now) then
      alerts[#alerts + 1] = {alert = alert_snapshot(id), event = 'unsilenced'}
    end
  end
  redis.call('DEL', k('silence', sid), k('smem', sid))
  redis.call('ZREM', k('silences'), sid)
  redis.call('ZREM', k('silence_due'), sid)
  redis.call('SADD', k('silence_clear'), sid)
  redis.call('INCR', k('silence_ver'))
  ended[#ended + 1] = sid
end

if ARGV[3] ~= '' then
  local ends = redis.call('HGET', k('silence', ARGV[3]), 'ends_at')
  if ends then
    if string.sub(ARGV[3], 1, 9) == 'schedule:' and tonumber(ends) > now then
      -- A maintenance window ended early stays off until its end (the service would
      -- otherwise start it again at once).
      redis.call('SET', k('wskip', ARGV[3]), ends, 'PX', string.format('%d', tonumber(ends) - now))
    end
    finish(ARGV[3])
  end
end

local due = redis.call('ZRANGEBYSCORE', k('silence_due'), '-inf', now, 'LIMIT', 0,
  tonumber(ARGV[2]))
for _, sid in ipairs(due) do
  local s = redis.call('HMGET', k('silence', sid), 'starts_at', 'ends_at')
  if not s[1] then
    redis.call('ZREM', k('silence_due'), sid)
  elseif tonumber(s[2]) <= now then
    finish(sid)
  else
    -- Started: next it ends.
    redis.call('ZADD', k('silence_due'), s[2], sid)
    redis.call('INCR', k('silence_ver'))
    started[#started + 1] = sid
  end
end

local head = redis.call('ZRANGE', k('silence_due'), 0, 0, 'WITHSCORES')
local next_at = false
if head[2] then
  next_at = tonumber(head[2])
end
return cjson.encode({started = started, ended = ended, alerts = alerts, next = next_at})
