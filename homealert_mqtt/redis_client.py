"""The Redis connection from settings (TLS, timeouts, a bounded pool), and waiting for
Redis to be up.

The pool is a BlockingConnectionPool: when every connection is busy, a caller waits
for one instead of failing with "Too many connections". Its size is one budget with the
escalation engine's concurrency (`pool_size`), so a storm queues and never fails.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from homealert_mqtt.config.settings import RedisSettings
from homealert_mqtt.mqtt.backoff import Backoff

_LOGGER = logging.getLogger(__name__)

POOL_RESERVE = 16  # connections beyond the engine's: pipeline, summary, sweep, HA, health
POOL_WAIT = 10.0  # seconds a caller waits for a free connection before it is an error


def pool_size(settings: RedisSettings, concurrency: int = 0) -> int:
    """`redis.max_connections`, or enough for `concurrency` deliveries and the rest."""
    return settings.max_connections or concurrency + POOL_RESERVE


class _ReplacesStale(AbstractConnection):
    """A failed health check replaces the connection instead of failing the call.

    After Redis restarts, every idle pooled connection is dead. redis-py PINGs one that
    was idle past the health check interval before using it, but with no retries set
    (commands must not be retried blindly: a script whose reply was lost may have run)
    the failed PING fails the caller's command. Nothing was sent yet, so reconnecting
    is safe: the command goes out on a fresh connection, as it would from a new pool.
    A Redis still down fails the connect, and the caller's own retry takes over.

    Mixed in before the class the URL's scheme chose (TCP, TLS, a Unix socket).
    """

    async def check_health(self) -> None:
        try:
            await super().check_health()  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self.disconnect()
            await self.connect()  # type: ignore[no-untyped-call] # redis-py leaves it untyped


class _Tcp(_ReplacesStale, Connection):
    pass


class _Tls(_ReplacesStale, SSLConnection):
    pass


class _Unix(_ReplacesStale, UnixDomainSocketConnection):
    pass


_FRESH: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _Tcp,
    SSLConnection: _Tls,
    UnixDomainSocketConnection: _Unix,
}


def make_redis(settings: RedisSettings, *, max_connections: int | None = None) -> Redis:
    """A client whose pool holds `max_connections` (default: `pool_size(settings)`)."""
    kwargs: dict[str, object] = {
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "health_check_interval": settings.health_check_interval,
        "decode_responses": False,
    }
    if settings.tls.enabled:
        kwargs["ssl_ca_certs"] = settings.tls.ca_certs
        kwargs["ssl_certfile"] = settings.tls.certfile
        kwargs["ssl_keyfile"] = settings.tls.keyfile
        if settings.tls.insecure:
            kwargs["ssl_cert_reqs"] = ssl.CERT_NONE
            kwargs["ssl_check_hostname"] = False
    pool = BlockingConnectionPool.from_url(
        settings.url,
        max_connections=max_connections or pool_size(settings),
        timeout=POOL_WAIT,
        **kwargs,
    )
    # The URL's scheme chose the class (TCP, TLS or a Unix socket); no connection exists
    # yet, so every one the pool makes is of the replacing kind.
    pool.connection_class = _FRESH.get(pool.connection_class, pool.connection_class)
    return Redis.from_pool(pool)


async def wait_for_redis(redis: Redis, settings: RedisSettings) -> None:
    backoff = Backoff(cap=10)
    while True:
        try:
            await redis.ping()
            _LOGGER.info("connected to Redis at %s", settings.safe_url())
            return
        except (RedisError, OSError) as err:
            delay = backoff.next_delay()
            _LOGGER.warning(
                "Redis at %s unavailable (%s); retrying in %.1f s", settings.safe_url(), err, delay
            )
            await asyncio.sleep(delay)
