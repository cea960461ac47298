"""An AlertStore on the session's Redis with its own key prefix and a FakeClock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import pytest

from homealert_mqtt.config import Settings
from homealert_mqtt.pipeline.ingest import store_request
from homealert_mqtt.pipeline.validate import Limits, parse
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
        alert, attributes_json = parse(
            json.dumps({"source": "s", "type": "t", **fields}).encode(), None, Limits(65536)
        )
        self._mid += 1
        return store_request(alert, attributes_json, self.settings.alerts, {}, mid=self._mid)

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
