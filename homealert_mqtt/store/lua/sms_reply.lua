-- sms_reply.lua: each SMS reply applied once, across restarts and replicas.
--
-- A reply (by its Twilio message sid) is claimed for `lease` ms by one caller; once it
-- was applied it is marked done and never claimed again. A caller that dies between
-- claim and done leaves the claim to expire: the next poll applies it again, and an
-- acknowledgement applied twice is one (command.lua answers `unchanged`).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  op: claim | done
-- ARGV[2]  message sid   ARGV[3] now (ms)
-- claim:   ARGV[4] lease (ms); returns 1 when the caller should apply it, else 0
-- done:    ARGV[4] how long done replies are remembered (ms); returns 1

local op, sid, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local done, claim = k('sms_replies'), k('sms_claim', sid)

if op == 'claim' then
  if redis.call('ZSCORE', done, sid) then
    return 0
  end
  if not redis.call('SET', claim, '1', 'NX', 'PX', ARGV[4]) then
    return 0
  end
  return 1
end

if op == 'done' then
  redis.call('ZADD', done, string.format('%d', now), sid)
  redis.call('DEL', claim)
  redis.call('ZREMRANGEBYSCORE', done, '-inf', string.format('%d', now - tonumber(ARGV[4])))
  return 1
end

return redis.error_reply('sms_reply.lua: unknown op ' .. tostring(op))
