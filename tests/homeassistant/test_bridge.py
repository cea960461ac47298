"""DiscoveryBridge against a real mosquitto: what ends up retained is what HA reads."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import aiomqtt
import pytest

from homealert_mqtt.homeassistant import (
    DiscoveryBridge,
    DiscoverySettings,
    alert_config_topics,
)
from homealert_mqtt.homeassistant.discovery import service_config_topic


class Broker(Protocol):  # the `broker` fixture of conftest.py
    host: str
    port: int


pytestmark = pytest.mark.timeout(20)

BASE = "homealert"
PREFIX = "homeassistant"
SETTINGS = DiscoverySettings(base_topic=BASE, prefix=PREFIX, sw_version="1.0.0")
NODE = SETTINGS.node_id
SERVICE_TOPIC = service_config_topic(PREFIX, NODE)


def _alert(alert_id: str, state: str = "new") -> dict[str, Any]:
    return {
        "id": alert_id,
        "state": state,
        "source": "garage",
        "type": "door_open",
        "priority": "P2",
    }


@asynccontextmanager
async def _client(broker: Broker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"t-{uuid.uuid4().hex[:8]}"
    ) as c:
        yield c


class CountingPublisher:
    """The bridge's `publish`, through a real client, counting what goes out."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.sent: list[tuple[str, bytes, int, bool]] = []

    async def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.sent.append((topic, payload, qos, retain))
        await self.client.publish(topic, payload, qos=qos, retain=retain)


async def _drain_until_sentinel(
    client: aiomqtt.Client, on_message: Callable[[aiomqtt.Message], None]
) -> None:
    """Read messages until our own sentinel comes back.

    The broker delivers a subscription's retained messages before anything published
    after the SUBACK, so the sentinel marks the end of them: no sleeping, no guessing.
    """
    sentinel = f"test/sentinel/{uuid.uuid4().hex}"
    await client.subscribe(sentinel, qos=1)
    await client.publish(sentinel, b"x", qos=1)
    async for message in client.messages:
        if message.topic.value == sentinel:
            return
        on_message(message)


async def retained(broker: Broker, topic_filter: str) -> dict[str, bytes]:
    """Everything retained under `topic_filter`, as a fresh subscriber sees it."""
    found: dict[str, bytes] = {}

    def keep(message: aiomqtt.Message) -> None:
        assert message.retain
        assert isinstance(message.payload, bytes)
        found[message.topic.value] = message.payload

    async with _client(broker) as client:
        await client.subscribe(topic_filter, qos=1)
        await _drain_until_sentinel(client, keep)
    return found


async def test_announce_and_alert_configs_are_retained(broker: Broker) -> None:
    async with _client(broker) as client:
        publish = CountingPublisher(client)
        bridge = DiscoveryBridge(publish, SETTINGS)
        await bridge.announce_service()
        await bridge.alert_changed(_alert("a1"))
        await bridge.alert_changed(_alert("a2", "acknowledged"))

    found = await retained(broker, f"{PREFIX}/#")
    assert set(found) == {
        SERVICE_TOPIC,
        *alert_config_topics(PREFIX, NODE, "a1"),
        *alert_config_topics(PREFIX, NODE, "a2"),
    }
    service = json.loads(found[SERVICE_TOPIC])
    assert service["device"]["name"] == "HomeAlert"
    sensor = json.loads(found[alert_config_topics(PREFIX, NODE, "a1")[0]])
    assert sensor["state_topic"] == f"{BASE}/alert/a1"
    assert all(qos == 1 and retain for _, _, qos, retain in publish.sent)


async def test_alert_configs_sent_once_per_alert(broker: Broker) -> None:
    async with _client(broker) as client:
        publish = CountingPublisher(client)
        bridge = DiscoveryBridge(publish, SETTINGS)
        await bridge.alert_changed(_alert("a1"))
        sent = len(publish.sent)
        # count bumps, escalation, ack: the configs do not change, nothing is sent
        for state in ("active", "escalated", "acknowledged", "resolved"):
            await bridge.alert_changed({**_alert("a1", state), "count": 7})
        assert len(publish.sent) == sent == 4  # sensor, Acknowledge, Resolve, Snooze
        assert bridge.known_alerts == {"a1"}


async def test_alert_removed_empties_configs(broker: Broker) -> None:
    async with _client(broker) as client:
        bridge = DiscoveryBridge(CountingPublisher(client), SETTINGS)
        await bridge.announce_service()
        await bridge.alert_changed(_alert("a1"))
        await bridge.alert_changed(_alert("a2"))
        await bridge.alert_removed("a1")

    found = await retained(broker, f"{PREFIX}/#")
    # An empty retained payload deletes the retained message: HA sees the empty
    # payload live and removes the entities; a later subscriber finds nothing.
    assert set(found) == {SERVICE_TOPIC, *alert_config_topics(PREFIX, NODE, "a2")}
    assert bridge.known_alerts == {"a2"}


@asynccontextmanager
async def _running_service(
    broker: Broker, bridge_factory: Callable[[Any], DiscoveryBridge]
) -> AsyncIterator[DiscoveryBridge]:
    """A minimal service loop: HA's status topic wired to the bridge, as the service does."""
    async with _client(broker) as client:
        bridge = bridge_factory(CountingPublisher(client))
        await client.subscribe(bridge.status_topic, qos=1)
        ready = asyncio.Event()

        async def pump() -> None:
            ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                if message.topic.matches(bridge.status_topic):
                    await bridge.on_ha_status(message.payload)

        async with asyncio.TaskGroup() as tasks:
            task = tasks.create_task(pump())
            await ready.wait()
            try:
                yield bridge
            finally:
                task.cancel()


async def test_ha_birth_resends_every_config(broker: Broker) -> None:
    expected = {SERVICE_TOPIC, *alert_config_topics(PREFIX, NODE, "a1")}
    async with _running_service(broker, lambda pub: DiscoveryBridge(pub, SETTINGS)) as bridge:
        await bridge.announce_service()
        await bridge.alert_changed(_alert("a1"))
        # HA's retained configs wiped (a broker restarted without persistence)...
        async with _client(broker) as other:
            for topic in expected:
                await other.publish(topic, b"", qos=1, retain=True)
        assert await retained(broker, f"{PREFIX}/#") == {}
        # ... then HA comes back and says so; it sees the configs arrive live.
        async with _client(broker) as ha:
            await ha.subscribe(f"{PREFIX}/#", qos=1)
            await ha.publish(f"{PREFIX}/status", b"online", qos=1)
            seen: set[str] = set()
            async with asyncio.timeout(5):
                async for message in ha.messages:
                    if message.payload:
                        seen.add(message.topic.value)
                    if seen >= expected:
                        break
        assert set(await retained(broker, f"{PREFIX}/#")) == expected


async def test_ha_offline_does_not_resend(broker: Broker) -> None:
    async with _client(broker) as client:
        publish = CountingPublisher(client)
        bridge = DiscoveryBridge(publish, SETTINGS)
        await bridge.alert_changed(_alert("a1"))
        before = len(publish.sent)
        await bridge.on_ha_status(b"offline")
        assert len(publish.sent) == before
        await bridge.on_ha_status(b"online")
        assert len(publish.sent) == before + 5  # service + 4 alert configs


async def test_stale_configs_cleared_at_start(broker: Broker) -> None:
    """Configs of alerts gone while the service was down are cleared; others kept."""
    foreign = f"{PREFIX}/binary_sensor/other_node/alert_zz/config"
    leftover = f"{PREFIX}/sensor/{NODE}/old_entity/config"
    async with _client(broker) as old_run:
        first = DiscoveryBridge(CountingPublisher(old_run), SETTINGS)
        await first.announce_service()
        for alert_id in ("gone1", "gone2", "kept"):
            await first.alert_changed(_alert(alert_id))
        await old_run.publish(foreign, b"{}", qos=1, retain=True)
        await old_run.publish(leftover, b"{}", qos=1, retain=True)

    # The restarted service: learn what is retained, then clear what should not be.
    async with _client(broker) as client:
        bridge = DiscoveryBridge(CountingPublisher(client), SETTINGS)
        await client.subscribe(bridge.retained_config_filter, qos=1)

        def feed(message: aiomqtt.Message) -> None:
            assert isinstance(message.payload, bytes)
            bridge.on_retained_config(message.topic.value, message.payload)

        await _drain_until_sentinel(client, feed)
        await client.unsubscribe(bridge.retained_config_filter)
        await bridge.announce_service()
        await bridge.alert_changed(_alert("kept"))
        await bridge.clear_stale({"kept"})

    found = await retained(broker, f"{PREFIX}/#")
    assert set(found) == {SERVICE_TOPIC, foreign, *alert_config_topics(PREFIX, NODE, "kept")}


async def test_clear_stale_keeps_alerts_not_yet_announced() -> None:
    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        sent.append((topic, payload))

    bridge = DiscoveryBridge(publish, SETTINGS)
    for topic in [*alert_config_topics(PREFIX, NODE, "later"), SERVICE_TOPIC]:
        bridge.on_retained_config(topic, b"{}")
    # retained elsewhere, or already emptied: not ours to clear
    bridge.on_retained_config(f"{PREFIX}/button/x/alert_1/config", b"{}")
    bridge.on_retained_config(f"other/button/{NODE}/alert_1/config", b"{}")
    bridge.on_retained_config(f"{PREFIX}/x/button/{NODE}/alert_1/config", b"{}")
    bridge.on_retained_config(alert_config_topics(PREFIX, NODE, "emptied")[0], b"{}")
    bridge.on_retained_config(alert_config_topics(PREFIX, NODE, "emptied")[0], b"")
    await bridge.clear_stale({"later"})
    assert sent == []


async def test_disabled_publishes_nothing_but_clears_old_configs() -> None:
    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        sent.append((topic, payload))

    bridge = DiscoveryBridge(publish, SETTINGS, enabled=False)
    await bridge.announce_service()
    await bridge.alert_changed(_alert("a1"))
    await bridge.on_ha_status(b"online")
    await bridge.on_event("created", _alert("a1"))
    await bridge.alert_removed("a1")
    assert sent == []
    # Turning discovery off removes what an earlier run had published.
    bridge.on_retained_config(SERVICE_TOPIC, b"{}")
    await bridge.clear_stale({"a1"})
    assert sent == [(SERVICE_TOPIC, b"")]


async def test_events_go_out_unretained(broker: Broker) -> None:
    async with _client(broker) as listener:
        await listener.subscribe(SETTINGS.event_topic, qos=1)
        async with _client(broker) as client:
            bridge = DiscoveryBridge(CountingPublisher(client), SETTINGS)
            await bridge.on_event("created", _alert("a1"))
            await bridge.on_event("notified", _alert("a1"))  # not for HA
            await bridge.on_ha_status(b"offline")
            await bridge.on_event("escalated", _alert("a1"))  # HA is gone: dropped
            await bridge.on_ha_status(b"online")
            await bridge.on_event("resolved", _alert("a1", "resolved"))
        got = []

        def keep(message: aiomqtt.Message) -> None:
            assert not message.retain
            assert isinstance(message.payload, bytes)
            got.append(json.loads(message.payload)["event_type"])

        await _drain_until_sentinel(listener, keep)
    assert got == ["created", "resolved"]
    assert await retained(broker, f"{BASE}/#") == {}


async def test_resend_does_not_resurrect_a_removed_alert() -> None:
    """HA's birth and an alert's removal at the same time: the removal wins."""
    last: dict[str, bytes] = {}

    async def slow_publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        await asyncio.sleep(0)  # let the other task run between publishes
        last[topic] = payload

    bridge = DiscoveryBridge(slow_publish, SETTINGS)
    for i in range(20):
        await bridge.alert_changed(_alert(f"a{i}"))
    await asyncio.gather(bridge.on_ha_status(b"online"), bridge.alert_removed("a10"))
    for topic in alert_config_topics(PREFIX, NODE, "a10"):
        assert last[topic] == b""
    assert "a10" not in bridge.known_alerts
