-- settle.lua: record how one send ended, once, however often it is asked.
--
-- KEYS[1]      key prefix with hash tag
-- KEYS[2..n+1] the delivery keys the sender reserved (reserve.lua)
-- ARGV[1]      the sender's token   ARGV[2] outcome (sent | failed | deferred)
-- ARGV[3]      how long the outcome is kept (ms)   ARGV[4] attempts kept per alert
-- ARGV[5]      the attempt, as JSON (pushed onto each alert's attempt list)
-- ARGV[6]      "<channel>\x1f<recipient>" for the paged set when sent, else ""
-- ARGV[7..]    alert ids, one per delivery key
--
-- The engine retries a settle that a Redis blip failed until it goes through: the page
-- is out, and forgetting that would page again once the reservation runs out. So a key
-- still holding this sender's reservation, or gone (the reservation expired during a
-- long outage, or Redis lost it), takes the outcome and gets the attempt recorded; a key
-- that already holds an outcome was settled by an earlier try whose reply was lost, and
-- is left alone (no second attempt row). Another sender's reservation is left alone too.
--
-- Returns the number of keys settled by this call.

local mine = 'pending:' .. ARGV[1]
local outcome = ARGV[2]
local kept = tonumber(ARGV[3])
local keep = tonumber(ARGV[4])
local attempt = ARGV[5]
local paged = ARGV[6]
local settled = 0
for i = 2, #KEYS do
  local held = redis.call('GET', KEYS[i])
  if held == false or held == mine then
    local id = ARGV[5 + i]
    redis.call('SET', KEYS[i], outcome, 'PX', kept)
    redis.call('LPUSH', k('attempts', id), attempt)
    redis.call('LTRIM', k('attempts', id), 0, keep - 1)
    if paged ~= '' then
      redis.call('SADD', k('paged', id), paged)
    end
    settled = settled + 1
  end
end
return settled
