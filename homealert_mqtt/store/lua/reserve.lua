-- reserve.lua: take delivery keys for one send, safely repeatable by the same sender.
--
-- KEYS[1]      key prefix with hash tag
-- KEYS[2..n+1] delivery keys, one per (alert, level, round, channel, recipient)
-- ARGV[1]      the sender's token, "<incarnation>.<random>" (unique per delivery)
-- ARGV[2]      lease (ms)
--
-- A key nobody holds is set to "pending:<token>" for the lease. A key that already
-- holds this token is ours too: the caller lost the reply of an earlier call that took
-- it (a connection dropped) and asks again. A key pending for an incarnation known dead
-- (bury.lua: its replica was restarted) is free: that sender will never settle it.
-- Any other value (another sender's pending, or an outcome: sent, failed, deferred)
-- means someone else handles it.
--
-- Returns a list of 1 (ours) or 0, one per key.

local mine = 'pending:' .. ARGV[1]
local lease = tonumber(ARGV[2])
local out = {}
for i = 2, #KEYS do
  local held = redis.call('GET', KEYS[i])
  if not held then
    redis.call('SET', KEYS[i], mine, 'PX', lease)
    out[#out + 1] = 1
  elseif held == mine then
    out[#out + 1] = 1
  elseif string.sub(held, 1, 8) == 'pending:'
      and redis.call('ZSCORE', k('dead'), string.match(held, '^pending:(.*)%.[^.]*$') or '') then
    redis.call('SET', KEYS[i], mine, 'PX', lease)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
