"""Numbers a client id's broker sessions, so that packet-id digests of a session the
broker forgot (restarted without persistence, session expired) never match the packet
ids of the next one, which start again at 1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis

from homealert_mqtt.store.keys import Keys
from homealert_mqtt.transient import Outage, retry_transient

T = TypeVar("T")


class BrokerSessions:
    def __init__(
        self, redis: Redis, keys: Keys, client_id: str, outage: Outage | None = None
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._client_id = client_id
        self._outage = outage or Outage("Redis")

    async def current(self) -> int:
        key = self._keys.session(self._client_id)
        value = await self._retrying(lambda: self._redis.get(key))
        return int(value or 0)

    async def fresh(self, previous: int) -> int:
        """A new session: the next number, and the previous session's digests dropped."""
        key = self._keys.session(self._client_id)
        number = int(await self._retrying(lambda: self._redis.incr(key)))
        old = self._keys.seen(f"{self._client_id}.{previous}")
        await self._retrying(lambda: self._redis.delete(old))
        return number

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        # The inbound link cannot take alerts without Redis anyway: wait for it here
        # rather than fail the link.
        return await retry_transient(call, self._outage, where="broker session")
