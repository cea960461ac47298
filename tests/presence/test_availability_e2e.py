"""Devices going offline and coming back, read from retained availability topics on a
real Mosquitto, exactly as each firmware publishes them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.presence.conftest import FIRMWARES, Firmware, clear_retained, created
from tests.probe import Probe
from tests.waits import eventually


def _settings(make_settings: Any, entries: list[dict[str, Any]], **presence: Any) -> Any:
    return make_settings({"presence": {"availability": entries, **presence}})


async def _presence(probe: Probe, name: str, state: str, timeout: float = 10) -> Any:
    seen = await probe.wait_for(
        f"{probe.base}/presence",
        lambda s: bool(s.payload) and s.json().get(name, {}).get("state") == state,
        timeout,
    )
    return seen.json()


@pytest.mark.parametrize("firmware", FIRMWARES, ids=[f.name for f in FIRMWARES])
async def test_offline_for_a_while_raises_and_online_resolves(
    firmware: Firmware,
    make_settings: Any,
    start_service: Any,
    probe: Probe,
    clock: FakeClock,
    unique: str,
) -> None:
    prefix = f"p{unique}"
    gone, fine = firmware.topic_of(prefix, "leak_sensor"), firmware.topic_of(prefix, "plug")
    # Both retained before the service starts: the replay at subscribe is the state.
    await probe.publish(gone, firmware.offline, retain=True)
    await probe.publish(fine, firmware.online, retain=True)
    try:
        settings = _settings(make_settings, [firmware.config(prefix, **{"for": 60})])
        await start_service(settings, clock=clock)
        await _presence(probe, "plug", "ok")
        await _presence(probe, "leak_sensor", "ok")
        clock.advance(59)
        await probe.wait_for(f"{probe.base}/summary")  # the service is busy-free
        assert created(probe, "device_offline", "leak_sensor") == []

        clock.advance(2)
        [event] = await _wait_created(probe, "leak_sensor")
        assert event["priority"] == "P2"  # severity high, by alerts.priorities
        body = await _presence(probe, "leak_sensor", "offline")
        assert body["plug"]["state"] == "ok"
        alert = await probe.state(event["id"], lambda a: True)
        assert alert["attributes"]["topic"] == gone
        assert alert["attributes"]["device"] == "leak_sensor"

        await probe.publish(gone, firmware.online, retain=True)
        await probe.state(event["id"], lambda a: a["state"] == "resolved")
        await _presence(probe, "leak_sensor", "ok")
        assert created(probe, "device_offline", "plug") == []
    finally:
        await clear_retained(probe, [gone, fine])


async def _wait_created(probe: Probe, source: str) -> list[Any]:
    await eventually(
        lambda: bool(created(probe, "device_offline", source)), what=f"{source} raised"
    )
    return created(probe, "device_offline", source)


async def test_back_before_for_raises_nothing(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock, unique: str
) -> None:
    firmware = FIRMWARES[2]  # tasmota
    prefix = f"p{unique}"
    topic = firmware.topic_of(prefix, "sonoff")
    settings = _settings(make_settings, [firmware.config(prefix, **{"for": 60})])
    await start_service(settings, clock=clock)
    await probe.publish(topic, firmware.offline)
    await _presence(probe, "sonoff", "ok")
    clock.advance(30)
    await probe.publish(topic, firmware.online)
    # The online is recorded before the deadline is looked at again.
    await eventually(lambda: _last_seen(probe, "sonoff"), what="online recorded")
    clock.advance(120)
    marker = len(probe.seen)
    await probe.alert(source="marker", type="marker")
    await probe.wait_for(f"{probe.base}/event", after=marker)
    await eventually(lambda: bool(probe.events("created")), what="marker created")
    assert created(probe, "device_offline", "sonoff") == []


def _last_seen(probe: Probe, name: str) -> bool:
    last = probe.last(f"{probe.base}/presence")
    return last is not None and bool(last.json().get(name, {}).get("last_seen"))


async def test_a_cleared_availability_topic_forgets_the_device(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock, unique: str
) -> None:
    """Zigbee2MQTT clears a removed device's retained availability: it leaves presence."""
    firmware = FIRMWARES[0]
    prefix = f"p{unique}"
    topic = firmware.topic_of(prefix, "old_bulb")
    settings = _settings(make_settings, [firmware.config(prefix)])
    await start_service(settings, clock=clock)
    await probe.publish(topic, firmware.online, retain=True)
    await _presence(probe, "old_bulb", "ok")
    await probe.publish(topic, b"", retain=True)
    await probe.wait_for(f"{probe.base}/presence", lambda s: "old_bulb" not in s.json())
