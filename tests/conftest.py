"""Shared fixtures: one real Redis and one real Mosquitto per session, each test isolated
by its own base topic, key prefix and client id; the service runs in-process."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from homealert_mqtt.config import Settings, load_config
from homealert_mqtt.service import Service
from tests.probe import Probe
from tests.servers import MosquittoServer, RedisServer


class FakeClock:
    """Epoch milliseconds that tests move forward instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto")).start()
    yield server
    server.stop()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


def deep_update(target: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = value
    return target


# Channels off by default in tests: the pipeline tests must not depend on notifications.
QUIET_CHANNELS = {name: {"enabled": False} for name in ("email", "slack", "sms", "phone", "mqtt")}


@pytest.fixture
def make_settings(
    tmp_path: Path, redis_server: RedisServer, mqtt_broker: MosquittoServer, unique: str
) -> Callable[..., Settings]:
    def make(
        extra: dict[str, Any] | None = None,
        *,
        redis_url: str | None = None,
        mqtt_url: str | None = None,
        name: str = "config.yaml",
    ) -> Settings:
        config: dict[str, Any] = {
            "mqtt": {
                "url": mqtt_url or mqtt_broker.url,
                "base_topic": f"t{unique}",
                "client_id": f"svc-{unique}",
            },
            "redis": {"url": redis_url or redis_server.url, "key_prefix": f"t{unique}"},
            # A copy: deep_update below changes nested dicts in place.
            "channels": copy.deepcopy(QUIET_CHANNELS),
            "homeassistant": {"discovery": False},
        }
        deep_update(config, extra or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return load_config(path, environ={})

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Running:
    def __init__(self, service: Service, task: asyncio.Task[None]) -> None:
        self.service = service
        self.task = task

    async def stop(self) -> None:
        self.task.cancel()
        done, _ = await asyncio.wait({self.task}, timeout=10)
        assert done, "the service did not stop within 10 s of being cancelled"
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def start_service() -> AsyncIterator[Callable[..., Any]]:
    running: list[Running] = []

    async def start(settings: Settings, **kwargs: Any) -> Running:
        from homealert_mqtt.app import build_service  # noqa: PLC0415

        service = build_service(settings, **kwargs)
        task = asyncio.create_task(service.run())
        ready = asyncio.create_task(service.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=15, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()
        assert ready in done, "service did not come online within 15 s"
        handle = Running(service, task)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        await handle.stop()


@pytest.fixture
async def probe(mqtt_broker: MosquittoServer, unique: str) -> AsyncIterator[Probe]:
    async with Probe(mqtt_broker.port, f"t{unique}") as p:
        yield p
