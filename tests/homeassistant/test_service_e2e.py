"""Home Assistant discovery in the running service, against real Mosquitto and Redis.

What Home Assistant would see: retained configs under the discovery prefix, entities
that act (the Acknowledge button), a re-send on HA's birth, removal at the end of an
alert's retention, and the clean-up of configs a previous run left behind.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import aiomqtt
import pytest

from homealert_mqtt.config import Settings
from homealert_mqtt.homeassistant.discovery import (
    alert_config_topics,
    object_id_slug,
    service_config_topic,
)
from homealert_mqtt.models import State
from tests.conftest import FakeClock
from tests.probe import Probe, Seen
from tests.servers import MosquittoServer

pytestmark = pytest.mark.timeout(40)

StartService = Callable[..., Any]


@pytest.fixture
def prefix(unique: str) -> str:
    return f"ha{unique}"


@pytest.fixture
def node(unique: str) -> str:
    return f"t{unique}"  # the node id is the base topic made safe


@pytest.fixture
def ha_settings(make_settings: Callable[..., Settings], prefix: str) -> Settings:
    return make_settings({"homeassistant": {"discovery": True, "discovery_prefix": prefix}})


@pytest.fixture
async def ha(probe: Probe, prefix: str) -> Probe:
    """The probe, also watching the discovery prefix (subscribed before the service starts)."""
    assert probe._client is not None
    await probe._client.subscribe(f"{prefix}/#", qos=1)
    return probe


async def retained_under(port: int, topic_filter: str) -> dict[str, bytes]:
    """Everything retained under `topic_filter`, as a fresh subscriber (HA) finds it."""
    found: dict[str, bytes] = {}
    sentinel = f"sentinel/{uuid.uuid4().hex}"
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"r-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe(topic_filter, qos=1)
        await c.subscribe(sentinel, qos=1)
        await c.publish(sentinel, b"x", qos=1)
        async with asyncio.timeout(10):
            async for message in c.messages:
                if message.topic.value == sentinel:
                    break
                if message.retain and isinstance(message.payload, bytes):
                    found[message.topic.value] = message.payload
    return found


def config(seen: Seen) -> dict[str, Any]:
    data = seen.json()
    assert isinstance(data, dict)
    return data


def non_empty(seen: Seen) -> bool:
    return bool(seen.payload)


def empty(seen: Seen) -> bool:
    return not seen.payload


async def new_alert(probe: Probe, **fields: Any) -> str:
    """Publish an alert; its id, from the `created` event."""
    before = len(probe.events("created"))
    body = {"source": "basement", "type": "water-leak", "severity": "critical"}
    await probe.alert(**{**body, **fields})
    return str((await probe.wait_events("created", before + 1))[before]["id"])


async def test_service_device_and_alert_entities(
    start_service: StartService,
    ha_settings: Settings,
    ha: Probe,
    mqtt_broker: MosquittoServer,
    prefix: str,
    node: str,
) -> None:
    await start_service(ha_settings)
    service_topic = service_config_topic(prefix, node)
    device = config(await ha.wait_for(service_topic, non_empty))
    assert device["device"]["name"] == f"HomeAlert {ha.base}"
    assert {c["platform"] for c in device["components"].values()} == {
        "sensor",
        "binary_sensor",
        "button",
        "event",
    }

    alert_id = await new_alert(ha, message="Water on the floor")
    assert "-" in alert_id
    sensor_topic, button_topic, resolve_topic, snooze_topic = alert_config_topics(
        prefix, node, alert_id
    )
    sensor = config(await ha.wait_for(sensor_topic, non_empty))
    button = config(await ha.wait_for(button_topic, non_empty))
    await ha.wait_for(resolve_topic, non_empty)
    assert sensor["state_topic"] == f"{ha.base}/alert/{alert_id}"
    slug = object_id_slug(f"{node}_alert_{alert_id}")
    assert sensor["default_entity_id"] == f"binary_sensor.{slug}"
    assert button["default_entity_id"] == f"button.{slug}_ack"
    assert "-" not in sensor["default_entity_id"]
    assert sensor["unique_id"] == f"homealert_{node}_alert_{alert_id}"

    found = await retained_under(mqtt_broker.port, f"{prefix}/#")
    assert set(found) == {service_topic, sensor_topic, button_topic, resolve_topic, snooze_topic}


async def test_button_press_acknowledges(
    start_service: StartService, ha_settings: Settings, ha: Probe, prefix: str, node: str
) -> None:
    await start_service(ha_settings)
    alert_id = await new_alert(ha, message="Water on the floor")
    button = config(await ha.wait_for(alert_config_topics(prefix, node, alert_id)[1], non_empty))

    await ha.publish(button["command_topic"], button["payload_press"])  # what HA does
    state = await ha.state(alert_id, lambda s: s["state"] == "acknowledged")
    assert state["acknowledged_by"] == "home_assistant"

    # HA's event entity: created, then acknowledged, with the message and level
    await ha.wait_for(f"{ha.base}/ha/event", lambda s: s.json()["event_type"] == "acknowledged")
    ha_events = [s.json() for s in ha.on(f"{ha.base}/ha/event")]
    assert [e["event_type"] for e in ha_events] == ["created", "acknowledged"]
    assert ha_events[0] == {
        "event_type": "created",
        "id": alert_id,
        "priority": "P1",
        "source": "basement",
        "type": "water-leak",
        "message": "Water on the floor",
        "escalation_level": 0,
    }
    # ... and the contract's event topic carries them too
    created = ha.events("created")[0]
    assert created["message"] == "Water on the floor"
    assert created["escalation_level"] == 0


async def test_repeats_of_a_known_alert_publish_no_config(
    start_service: StartService, ha_settings: Settings, ha: Probe, prefix: str, node: str
) -> None:
    await start_service(ha_settings)
    alert_id = await new_alert(ha)
    for topic in alert_config_topics(prefix, node, alert_id):
        await ha.wait_for(topic, non_empty)
    mark = len(ha.seen)
    for _ in range(5):
        await ha.alert(source="basement", type="water-leak", severity="critical")
    await ha.wait_events("deduplicated", 5)
    # A later new alert's configs mark the point by which any config for the repeats
    # would have gone out (the pipeline handles messages in order).
    other = await new_alert(ha, source="garage")
    await ha.wait_for(alert_config_topics(prefix, node, other)[1], non_empty, after=mark)
    configs = [s.topic for s in ha.seen[mark:] if s.topic.startswith(f"{prefix}/")]
    assert configs == alert_config_topics(prefix, node, other)


async def test_ha_birth_resends_everything(
    start_service: StartService,
    ha_settings: Settings,
    ha: Probe,
    mqtt_broker: MosquittoServer,
    prefix: str,
    node: str,
) -> None:
    await start_service(ha_settings)
    alert_id = await new_alert(ha)
    expected = {service_config_topic(prefix, node), *alert_config_topics(prefix, node, alert_id)}
    for topic in expected:
        await ha.wait_for(topic, non_empty)
    # The broker lost them (restarted without persistence, say) ...
    for topic in expected:
        await ha.publish(topic, b"", retain=True)
    assert await retained_under(mqtt_broker.port, f"{prefix}/#") == {}
    # ... and HA comes back and says so.
    mark = len(ha.seen)
    await ha.publish(f"{prefix}/status", b"online")
    for topic in expected:
        await ha.wait_for(topic, non_empty, after=mark)
    assert set(await retained_under(mqtt_broker.port, f"{prefix}/#")) == expected


async def test_expired_alert_loses_its_entities(
    start_service: StartService,
    ha_settings: Settings,
    ha: Probe,
    clock: FakeClock,
    mqtt_broker: MosquittoServer,
    prefix: str,
    node: str,
) -> None:
    await start_service(ha_settings, clock=clock)
    alert_id = await new_alert(ha)
    topics = alert_config_topics(prefix, node, alert_id)
    for topic in topics:
        await ha.wait_for(topic, non_empty)
    # Resolved first, so that no escalation restarts its retention while time jumps.
    await ha.publish(f"{ha.base}/alert/{alert_id}/resolve", b"")
    await ha.state(alert_id, lambda s: s["state"] == "resolved")
    mark = len(ha.seen)
    clock.advance(ha_settings.alerts.retention[State.RESOLVED] + 1)
    await ha.wait_for(f"{ha.base}/alert/{alert_id}", empty, after=mark)
    for topic in topics:
        await ha.wait_for(topic, empty, after=mark)
    found = await retained_under(mqtt_broker.port, f"{prefix}/#")
    assert set(found) == {service_config_topic(prefix, node)}


async def test_stale_configs_of_a_previous_run_are_cleared(
    start_service: StartService,
    ha_settings: Settings,
    ha: Probe,
    mqtt_broker: MosquittoServer,
    prefix: str,
    node: str,
) -> None:
    first = await start_service(ha_settings)
    kept = await new_alert(ha)
    await ha.wait_for(alert_config_topics(prefix, node, kept)[1], non_empty)
    await first.stop()

    # Left behind: an alert gone while the service was down, an entity an older
    # version published, and another installation's config (not ours to touch).
    stale = [*alert_config_topics(prefix, node, "gone-1"), f"{prefix}/sensor/{node}/old/config"]
    foreign = f"{prefix}/binary_sensor/other_node/alert_x/config"
    for topic in [*stale, foreign]:
        await ha.publish(topic, b'{"name": "old"}', retain=True)

    mark = len(ha.seen)
    await start_service(ha_settings)
    for topic in stale:
        await ha.wait_for(topic, empty, after=mark)
    found = await retained_under(mqtt_broker.port, f"{prefix}/#")
    assert set(found) == {
        service_config_topic(prefix, node),
        *alert_config_topics(prefix, node, kept),
        foreign,
    }


async def test_disabled_publishes_nothing_and_clears_earlier_configs(
    start_service: StartService,
    make_settings: Callable[..., Settings],
    ha: Probe,
    mqtt_broker: MosquittoServer,
    prefix: str,
    node: str,
) -> None:
    earlier = service_config_topic(prefix, node)
    await ha.publish(earlier, b'{"name": "old"}', retain=True)
    settings = make_settings({"homeassistant": {"discovery": False, "discovery_prefix": prefix}})
    mark = len(ha.seen)
    await start_service(settings)
    # The entities of a run with discovery on are removed ...
    await ha.wait_for(earlier, empty, after=mark)
    # ... and nothing else appears, whatever happens.
    await ha.publish(f"{prefix}/status", b"online")
    first = await new_alert(ha)
    await ha.alert(source="basement", type="water-leak", severity="critical")
    await ha.wait_events("deduplicated", 1)
    await ha.publish(f"{ha.base}/alert/{first}/ack", b"")
    await ha.state(first, lambda s: s["state"] == "acknowledged")
    assert [s.payload for s in ha.seen[mark:] if s.topic.startswith(f"{prefix}/")] == [
        b"",  # the clean-up above
        b"online",  # our own birth message
    ]
    assert ha.on(f"{ha.base}/ha/event") == []
    assert await retained_under(mqtt_broker.port, f"{prefix}/#") == {}
