"""Alerts whose Home Assistant entities were removed while HA may not have listened.

Home Assistant deletes an entity only when it gets the empty config on a topic it has
discovered since it started. An alert removed while HA was down leaves its entity in
HA's registry for good (`unavailable`), so the bridge keeps those alert ids here and,
after HA's next birth message, makes HA discover each once more and then removes it.

Bounded twice: entries older than `KEEP_MS` and all but the newest `KEEP_MAX` are
dropped whenever one is added (one MULTI, so a crash leaves no half-trimmed set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from redis.asyncio import Redis

from homealert_mqtt.store.keys import Keys
from homealert_mqtt.store.scripts import as_str

KEEP_MS: Final = 7 * 24 * 3600 * 1000  # an HA that stays down longer is set up anew
KEEP_MAX: Final = 1000


class RemovedEntities:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        clock: Callable[[], int],
        *,
        keep_ms: int = KEEP_MS,
        keep_max: int = KEEP_MAX,
    ) -> None:
        self._redis = redis
        self._key = keys.ha_removed
        self._clock = clock
        self._keep_ms = keep_ms
        self._keep_max = keep_max

    async def remember(self, alert_ids: Sequence[str]) -> None:
        if not alert_ids:
            return
        now = self._clock()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._key, dict.fromkeys(alert_ids, now))
            pipe.zremrangebyscore(self._key, "-inf", f"({now - self._keep_ms}")
            pipe.zremrangebyrank(self._key, 0, -(self._keep_max + 1))
            await pipe.execute()

    async def recall(self) -> list[str]:
        """The alert ids still kept, oldest first."""
        low = self._clock() - self._keep_ms
        found = await self._redis.zrangebyscore(self._key, low, "+inf")
        return [as_str(member) for member in found]

    async def forget(self, alert_ids: Sequence[str]) -> None:
        """Home Assistant has seen these removed (after its birth message)."""
        if alert_ids:
            await self._redis.zrem(self._key, *alert_ids)
