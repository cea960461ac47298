"""The Redis connection from settings (TLS, timeouts), and waiting for Redis to be up."""

from __future__ import annotations

import asyncio
import logging
import ssl

from redis.asyncio import Redis
from redis.exceptions import RedisError

from homealert_mqtt.config.settings import RedisSettings
from homealert_mqtt.mqtt.backoff import Backoff

_LOGGER = logging.getLogger(__name__)


def make_redis(settings: RedisSettings) -> Redis:
    kwargs: dict[str, object] = {
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "health_check_interval": 15,
        "decode_responses": False,
    }
    if settings.tls.enabled:
        kwargs["ssl_ca_certs"] = settings.tls.ca_certs
        kwargs["ssl_certfile"] = settings.tls.certfile
        kwargs["ssl_keyfile"] = settings.tls.keyfile
        if settings.tls.insecure:
            kwargs["ssl_cert_reqs"] = ssl.CERT_NONE
            kwargs["ssl_check_hostname"] = False
    return Redis.from_url(settings.url, **kwargs)  # type: ignore[arg-type]


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
