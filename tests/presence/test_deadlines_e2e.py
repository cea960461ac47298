"""Deadlines live in Redis: two replicas raise once, a restart forgets nothing, and a
deadline that passed while the service was down raises right after it starts."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import FakeClock
from tests.presence.conftest import FIRMWARES, clear_retained, created
from tests.probe import Probe
from tests.waits import eventually, store_for

Z2M = FIRMWARES[0]


async def test_two_replicas_raise_and_resolve_once(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock, unique: str
) -> None:
    prefix = f"p{unique}"
    presence = {"availability": [Z2M.config(prefix, **{"for": 60})]}
    first = make_settings({"presence": presence})
    second = make_settings(
        {"presence": presence, "mqtt": {"client_id": f"svc2-{unique}"}}, name="second.yaml"
    )
    await start_service(first, clock=clock)
    await start_service(second, clock=clock)
    topic = Z2M.topic_of(prefix, "fridge")
    await probe.publish(topic, Z2M.offline)
    await probe.wait_for(f"{probe.base}/presence", lambda s: "fridge" in s.json())
    clock.advance(61)
    await eventually(lambda: bool(created(probe, "device_offline", "fridge")), what="raised")
    await asyncio.sleep(1.5)  # both replicas polled their deadlines meanwhile, twice
    [event] = created(probe, "device_offline", "fridge")
    async with store_for(first) as store:
        alert = await store.get_alert(event["id"])
        assert alert is not None
        assert alert.count == 1  # not raised a second time, not even as a repeat

    await probe.publish(topic, Z2M.online)
    await probe.state(event["id"], lambda a: a["state"] == "resolved")
    await asyncio.sleep(1.0)
    resolved = [e for e in probe.events("resolved") if e["id"] == event["id"]]
    assert len(resolved) == 1


async def test_deadline_passed_while_down_raises_soon_after_start(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock, unique: str
) -> None:
    prefix = f"p{unique}"
    topic = Z2M.topic_of(prefix, "doorbell")
    settings = make_settings(
        {
            "presence": {
                "availability": [Z2M.config(prefix, **{"for": 300})],
                "heartbeats": {"cron": {"every": 600}},
            }
        }
    )
    await probe.publish(topic, Z2M.offline, retain=True)
    try:
        running = await start_service(settings, clock=clock)
        await probe.wait_for(
            f"{probe.base}/presence", lambda s: {"doorbell", "cron"} <= set(s.json())
        )
        clock.advance(200)
        await running.stop()
        clock.advance(3600)  # both deadlines pass while nothing runs

        loop = asyncio.get_running_loop()
        started = loop.time()
        await start_service(settings, clock=clock)
        await eventually(
            lambda: (
                bool(created(probe, "device_offline", "doorbell"))
                and bool(created(probe, "heartbeat_missed", "cron"))
            ),
            what="both raised",
        )
        assert loop.time() - started < 5
        assert len(created(probe, "device_offline", "doorbell")) == 1
    finally:
        await clear_retained(probe, [topic])


async def test_restart_keeps_the_first_offline_time(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock, unique: str
) -> None:
    """The retained `offline` replayed after a restart is not a new outage: the device
    still raises `for` seconds after it first went offline, not after the restart."""
    prefix = f"p{unique}"
    topic = Z2M.topic_of(prefix, "siren")
    settings = make_settings({"presence": {"availability": [Z2M.config(prefix, **{"for": 300})]}})
    await probe.publish(topic, Z2M.offline, retain=True)
    try:
        running = await start_service(settings, clock=clock)
        await probe.wait_for(f"{probe.base}/presence", lambda s: "siren" in s.json())
        await running.stop()
        clock.advance(250)
        await start_service(settings, clock=clock)
        await probe.wait_for(f"{probe.base}/status", lambda s: s.payload == b"online")
        clock.advance(60)
        await eventually(lambda: bool(created(probe, "device_offline", "siren")), what="raised")
    finally:
        await clear_retained(probe, [topic])
