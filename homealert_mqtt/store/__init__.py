"""Alert state in Redis: key names, Lua scripts, and the typed store that runs them."""
