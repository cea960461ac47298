"""The listener between the service's seams and the bridge, with a recording publish."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from homealert_mqtt.embedded import free_port
from homealert_mqtt.homeassistant.bridge import DiscoveryBridge
from homealert_mqtt.homeassistant.discovery import (
    DiscoverySettings,
    alert_config_topics,
    service_config_topic,
)
from homealert_mqtt.homeassistant.runtime import HomeAssistantListener
from homealert_mqtt.models import AlertRecord, Priority, State
from homealert_mqtt.mqtt.link import Inbound
from homealert_mqtt.store.ha_removed import RemovedEntities
from homealert_mqtt.store.keys import Keys

SETTINGS = DiscoverySettings(base_topic="homealert", prefix="homeassistant")
SERVICE = service_config_topic("homeassistant", "homealert")


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.changed = asyncio.Event()

    async def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.sent.append((topic, payload))
        self.changed.set()

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.sent]


def alert(alert_id: str, count: int = 1, level: int = 0) -> AlertRecord:
    return AlertRecord(
        id=alert_id,
        state=State.NEW,
        priority=Priority.P2,
        severity="high",
        source="garage",
        type="door-open",
        message="The garage door is open",
        attributes={},
        count=count,
        first_seen=0,
        last_seen=0,
        group_id=None,
        escalation_level=level,
        next_escalation_at=None,
        acknowledged_by=None,
        acknowledged_at=None,
        ack_note=None,
        resolved_at=None,
        resolved_by=None,
        fingerprint="fp",
        epoch=1,
        updated_at=0,
    )


def status(payload: bytes) -> Inbound:
    return Inbound("homeassistant/status", payload, 1, 1, False, False, 1)


def listener() -> tuple[HomeAssistantListener, Recorder]:
    record = Recorder()
    return HomeAssistantListener(DiscoveryBridge(record, SETTINGS)), record


async def test_first_resync_announces_then_alerts_cost_nothing_when_known() -> None:
    ha, record = listener()
    await ha.alert_changed(alert("a-1"), ())  # during the resync
    await ha.resynced(["a-1"])
    assert record.topics() == [*alert_config_topics("homeassistant", "homealert", "a-1"), SERVICE]
    assert ha.first_resync.is_set()
    assert ha.published_ids == {"a-1"}
    record.sent.clear()
    for count in range(2, 50):
        await ha.alert_changed(alert("a-1", count), ("deduplicated",))
    assert record.sent == []


async def test_lifecycle_events_reach_the_event_entity() -> None:
    ha, record = listener()
    await ha.alert_changed(alert("a-1"), ("created", "grouped"))
    await ha.alert_changed(alert("a-1", level=2), ("escalated", "notified"))
    events = [json.loads(p) for t, p in record.sent if t == "homealert/ha/event"]
    assert [e["event_type"] for e in events] == ["created", "escalated"]
    assert events[1] == {
        "event_type": "escalated",
        "id": "a-1",
        "priority": "P2",
        "source": "garage",
        "type": "door-open",
        "message": "The garage door is open",
        "escalation_level": 2,
    }


async def test_birth_and_reconnect_resend_off_the_callers_path() -> None:
    ha, record = listener()
    await ha.alert_changed(alert("a-1"), ())
    await ha.resynced(["a-1"])
    record.sent.clear()
    await ha.on_ha_status(status(b"offline"))
    await ha.on_ha_status(status(b"online"))
    await ha.resynced(["a-1"])  # a reconnect
    assert record.sent == []  # nothing on the caller's path
    loop = asyncio.create_task(ha.resend_loop())
    try:
        async with asyncio.timeout(5):
            while len(record.sent) < 3:
                await record.changed.wait()
                record.changed.clear()
    finally:
        loop.cancel()
    # one re-send for both requests: the service and the alert's two configs
    assert sorted(record.topics()) == sorted(
        [SERVICE, *alert_config_topics("homeassistant", "homealert", "a-1")]
    )


async def test_removed_alert_loses_its_configs() -> None:
    ha, record = listener()
    await ha.alert_changed(alert("a-1"), ())
    record.sent.clear()
    await ha.alert_removed("a-1")
    assert record.sent == [
        (topic, b"") for topic in alert_config_topics("homeassistant", "homealert", "a-1")
    ]
    assert not ha.bridge.knows("a-1")


async def test_ghost_clean_up_is_tried_again_when_redis_was_away() -> None:
    """HA's birth comes once: a clean-up that met a Redis error stays due. (Redis: a
    client of a port nothing listens on, a real connection refused.)"""
    no_retry = Retry(NoBackoff(), 0)
    redis = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=no_retry)
    removed = RemovedEntities(redis, Keys.for_prefix("t"), lambda: 0)
    record = Recorder()
    listener = HomeAssistantListener(DiscoveryBridge(record, SETTINGS, removed=removed))
    await listener.on_ha_status(Inbound("homeassistant/status", b"online", 1, 1, False, False, 0))
    try:
        loop = asyncio.create_task(listener.resend_loop())
        done, _ = await asyncio.wait({loop}, timeout=10)
        assert done, "the loop did not meet the Redis error"
        assert isinstance(loop.exception(), RedisError | OSError)
        assert listener._resend_due.is_set()
        assert SERVICE in record.topics()  # the re-send itself went out
    finally:
        await redis.aclose()
