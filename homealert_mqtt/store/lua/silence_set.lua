-- silence_set.lua: create or replace one silence.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  now (epoch ms)   ARGV[2] silence id   ARGV[3] matchers (JSON object)
-- ARGV[4]  starts_at (ms)   ARGV[5] ends_at (ms)   ARGV[6] created_by   ARGV[7] comment
--
-- The alerts it silences are marked afterwards (silence_mark.lua: matching is the
-- service's), and the escalation engine checks every batch against the silences before
-- it pages, so an alert is never paged in between.
--
-- Returns {"created" or "replaced", the silences' version after this change}.

local now = tonumber(ARGV[1])
local sid, starts, ends = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
local key = k('silence', sid)
local outcome = 'created'
if redis.call('EXISTS', key) == 1 then
  outcome = 'replaced'
  redis.call('DEL', key)
end
redis.call('HSET', key, 'id', sid, 'matchers', ARGV[3], 'starts_at', ARGV[4], 'ends_at', ARGV[5],
  'created_by', ARGV[6], 'comment', ARGV[7])
redis.call('ZADD', k('silences'), ends, sid)
local next_change = ends
if starts > now then
  next_change = starts
end
redis.call('ZADD', k('silence_due'), next_change, sid)
redis.call('SREM', k('silence_clear'), sid)
return {outcome, redis.call('INCR', k('silence_ver'))}
