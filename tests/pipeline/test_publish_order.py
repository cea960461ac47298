"""Writers race to publish: the retained topic must end with the latest state.

The pipeline, commands and the escalation engine each publish the snapshot their script
returned, and a resync publishes what it read a moment ago. A snapshot older than one
already published is not published again (its `rev` says so).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.redis_client import make_redis
from homealert_mqtt.store.alert_store import AlertStore, IngestRequest
from homealert_mqtt.store.keys import Keys
from homealert_mqtt.topics import Topics
from tests.conftest import FakeClock
from tests.requests import bare_request


class Broker:
    """Records publishes in order, like a broker's retained store; can hold one back."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.log: list[tuple[str, bytes]] = []
        self.hold_topic: str | None = None
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def publish(self, topic: str, payload: bytes, _qos: int, retain: bool) -> None:
        # Handed to the client in call order, as aiomqtt hands them to paho.
        self.log.append((topic, payload))
        if retain:
            self.retained[topic] = payload
        if topic == self.hold_topic:
            self.hold_topic = None
            self.holding.set()
            await self.release.wait()

    def count(self, topic: str) -> int:
        return int(json.loads(self.retained[topic])["count"])


def request(alert_type: str, mid: int) -> IngestRequest:
    return bare_request(alert_type, base_id=f"s-{alert_type}", mid=mid)


@pytest.fixture
async def parts(make_settings: Any, clock: FakeClock) -> AsyncIterator[Any]:
    settings = make_settings()
    redis = make_redis(settings.redis)
    store = AlertStore(redis, Keys.for_prefix(settings.redis.key_prefix), settings.alerts, clock)
    broker = Broker()
    topics = Topics(settings.mqtt.base_topic)
    yield store, StatePublisher(topics, store, broker.publish, clock), broker, topics
    await redis.aclose()


async def test_an_older_snapshot_published_late_is_dropped(parts: Any) -> None:
    store, publisher, broker, topics = parts
    (first,) = await store.ingest_many([request("a", 1)])
    (second,) = await store.ingest_many([request("a", 2)])
    assert second.alert.rev > first.alert.rev
    await publisher.alert(second.alert, ("deduplicated",))
    await publisher.alert(first.alert, ("created",))  # e.g. the engine, a moment late
    topic = topics.alert(first.alert.id)
    assert broker.count(topic) == 2
    events = [json.loads(p)["event"] for t, p in broker.log if t == topics.event]
    assert events == ["deduplicated", "created"]  # events are history: both go out


async def test_a_resync_does_not_overwrite_what_was_published_meanwhile(parts: Any) -> None:
    store, publisher, broker, topics = parts
    (a,) = await store.ingest_many([request("a", 1)])
    (b,) = await store.ingest_many([request("b", 2)])
    ids = await store.stored_ids()
    first, second = (topics.alert(i) for i in ids)
    broker.hold_topic = first  # the resync has read every alert, then waits here
    resync = asyncio.create_task(publisher.resync())
    await broker.holding.wait()
    later_id = ids[1]
    again = request("b" if later_id == b.alert.id else "a", 3)
    (newer,) = await store.ingest_many([again])  # the pipeline goes on meanwhile
    await publisher.alert(newer.alert, ("deduplicated",))
    broker.release.set()
    await resync
    assert broker.count(second) == 2
    assert broker.count(first) == 1
    assert a.alert.id in ids
