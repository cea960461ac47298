-- sms_code.lua: the reply codes of alerts paged by SMS ("Reply ACK <code>").
--
-- A code is 4 characters of A-Z0-9, unique among open alerts. HASH sms_codes holds both
-- directions: "c:<code>" -> alert id and "a:<alert id>" -> code. A code whose alert is no
-- longer open may be given to another alert (at most 36^4 entries ever).
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  op: assign | paged
-- assign: ARGV[2] JSON array of alert ids, ARGV[3] JSON array of random candidate codes
--   returns a JSON array with each alert's code, '' for an alert that is not open (or
--   when every candidate was taken: the caller sends without a code)
-- paged:  ARGV[2] phone number, ARGV[3] JSON array of alert ids, ARGV[4] now (ms)
--   records what was last paged to that number (its bare "ACK" acknowledges those)
--   returns 1

local op = ARGV[1]
local codes = k('sms_codes')

local function is_open(id)
  return id and redis.call('ZSCORE', k('open'), id) ~= false
end

if op == 'assign' then
  local ids, candidates = cjson.decode(ARGV[2]), cjson.decode(ARGV[3])
  local out, next_candidate = {}, 1
  for i, id in ipairs(ids) do
    local code = ''
    if is_open(id) then
      local mine = redis.call('HGET', codes, 'a:' .. id)
      if mine and redis.call('HGET', codes, 'c:' .. mine) == id then
        code = mine
      else
        while next_candidate <= #candidates do
          local candidate = candidates[next_candidate]
          next_candidate = next_candidate + 1
          local holder = redis.call('HGET', codes, 'c:' .. candidate)
          if not holder or not is_open(holder) then
            if holder then
              redis.call('HDEL', codes, 'a:' .. holder)
            end
            redis.call('HSET', codes, 'c:' .. candidate, id, 'a:' .. id, candidate)
            code = candidate
            break
          end
        end
      end
    end
    out[i] = code
  end
  return cjson.encode(out)
end

if op == 'paged' then
  redis.call('HSET', k('sms_last'), ARGV[2], cjson.encode({ids = cjson.decode(ARGV[3]),
    at = tonumber(ARGV[4])}))
  return 1
end

return redis.error_reply('sms_code.lua: unknown op ' .. tostring(op))
