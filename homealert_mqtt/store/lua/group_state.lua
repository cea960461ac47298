-- group_state.lua: one group's state, as the other scripts compute it.
--
-- KEYS[1]  key prefix with hash tag
-- ARGV[1]  group id
--
-- Returns the group state (see group_state in _lib.lua) as JSON, or `false`.

return cjson.encode(group_state(ARGV[1]))
