"""Numbers a client id's broker sessions, so that packet-id digests of a session the
broker forgot (restarted without persistence, session expired) never match the packet
ids of the next one, which start again at 1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from homealert_mqtt.mqtt.backoff import Backoff
from homealert_mqtt.store.keys import Keys

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


class BrokerSessions:
    def __init__(self, redis: Redis, keys: Keys, client_id: str) -> None:
        self._redis = redis
        self._keys = keys
        self._client_id = client_id

    async def current(self) -> int:
        key = self._keys.session(self._client_id)
        value = await _retrying(lambda: self._redis.get(key))
        return int(value or 0)

    async def fresh(self, previous: int) -> int:
        """A new session: the next number, and the previous session's digests dropped."""
        key = self._keys.session(self._client_id)
        number = int(await _retrying(lambda: self._redis.incr(key)))
        old = self._keys.seen(f"{self._client_id}.{previous}")
        await _retrying(lambda: self._redis.delete(old))
        return number


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    # The inbound link cannot take alerts without Redis anyway: wait for it here rather
    # than fail the link.
    backoff = Backoff(initial=0.2, cap=5)
    while True:
        try:
            return await call()
        except (RedisError, OSError) as err:
            delay = backoff.next_delay()
            _LOGGER.warning("Redis unavailable (%s); retrying in %.1f s", err, delay)
            await asyncio.sleep(delay)
