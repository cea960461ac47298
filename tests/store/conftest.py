"""An AlertStore on the session's Redis with its own key prefix and a FakeClock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import pytest

from homealert_mqtt.config import Settings
from homealert_mqtt.pipeline.fingerprint import group_identity, identify
from homealert_mqtt.pipeline.prioritise import prioritise
from homealert_mqtt.pipeline.validate import Limits, parse_alert
from homealert_mqtt.redis_client import make_redis
from homealert_mqtt.store.alert_store import AlertStore, IngestRequest
from homealert_mqtt.store.keys import Keys
from tests.conftest import FakeClock


def lib_lua() -> str:
    return resources.files("homealert_mqtt.store").joinpath("lua/_lib.lua").read_text("utf-8")


class StoreKit:
    """The store, and ways to put alerts into it as the pipeline would."""

    def __init__(self, store: AlertStore, settings: Settings, clock: FakeClock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.redis = store.redis
        self.keys = store.keys
        self._mid = 0

    def request(self, **fields: Any) -> IngestRequest:
        alert = parse_alert(
            json.dumps({"source": "s", "type": "t", **fields}).encode(), None, Limits(65536)
        )
        alerts = self.settings.alerts
        identity = identify(alert, alerts.dedup.attributes)
        group = group_identity(alert, alerts.grouping.attributes)
        self._mid += 1
        return IngestRequest(
            fingerprint=identity.fingerprint,
            base_id=identity.base_id,
            status=alert.status,
            source=alert.source,
            type=alert.type,
            severity=alert.severity or "",
            priority=prioritise(alert, alerts.priorities, alerts.default_priority).value,
            message=alert.message,
            attributes_json=json.dumps(alert.attributes),
            timestamp_ms=alert.timestamp_ms,
            group_key_hash=group.key_hash,
            group_key_text=group.key_text,
            base_group_id=group.base_group_id,
            client_id="",
            mid=self._mid,
            dup=False,
            digest="",
        )

    async def ingest(self, **fields: Any) -> Any:
        (result,) = await self.store.ingest_many([self.request(**fields)])
        return result

    async def lua(self, body: str, *args: Any) -> Any:
        """Run `body` with _lib.lua in front, as the service's scripts run."""
        return await self.redis.eval(lib_lua() + "\n" + body, 1, self.keys.prefix, *args)


@pytest.fixture
async def kit(make_settings: Callable[..., Settings], clock: FakeClock) -> AsyncIterator[StoreKit]:
    settings = make_settings()
    redis = make_redis(settings.redis)
    store = AlertStore(redis, Keys.for_prefix(settings.redis.key_prefix), settings.alerts, clock)
    yield StoreKit(store, settings, clock)
    await redis.aclose()


@pytest.fixture
def kit_factory(make_settings: Callable[..., Settings], clock: FakeClock) -> Callable[..., Any]:
    """A StoreKit with extra settings (closed by the caller's `async with`)."""

    class _Kit:
        def __init__(self, extra: dict[str, Any]) -> None:
            self.settings = make_settings(extra)

        async def __aenter__(self) -> StoreKit:
            self.redis = make_redis(self.settings.redis)
            keys = Keys.for_prefix(self.settings.redis.key_prefix)
            store = AlertStore(self.redis, keys, self.settings.alerts, clock)
            return StoreKit(store, self.settings, clock)

        async def __aexit__(self, *exc: object) -> None:
            await self.redis.aclose()

    return _Kit
