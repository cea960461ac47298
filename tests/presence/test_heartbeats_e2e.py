"""Heartbeats: missed ones raise, the next one resolves, unknown names are answered."""

from __future__ import annotations

from typing import Any

from tests.conftest import FakeClock
from tests.presence.conftest import created
from tests.probe import Probe
from tests.waits import eventually

HEARTBEATS = {"backup": {"every": 3600, "grace": 600, "severity": "medium"}}


async def test_missed_raises_and_the_next_beat_resolves(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock
) -> None:
    settings = make_settings({"presence": {"heartbeats": HEARTBEATS}})
    await start_service(settings, clock=clock)
    base = probe.base
    await probe.wait_for(f"{base}/presence", lambda s: "backup" in s.json())
    clock.advance(3000)
    await probe.publish(f"{base}/heartbeat/backup", b"done")
    await probe.wait_for(f"{base}/presence", lambda s: s.json()["backup"]["last_seen"] is not None)
    clock.advance(4199)  # every + grace after the beat, less a second
    marker = len(probe.seen)
    await probe.alert(source="marker", type="marker")
    await probe.wait_for(f"{base}/event", lambda s: s.json()["source"] == "marker", after=marker)
    assert created(probe, "heartbeat_missed", "backup") == []

    clock.advance(2)
    await eventually(lambda: bool(created(probe, "heartbeat_missed", "backup")), what="raised")
    [event] = created(probe, "heartbeat_missed", "backup")
    assert event["priority"] == "P3"
    body = await probe.wait_for(f"{base}/presence", lambda s: s.json()["backup"]["state"] == "late")
    assert body.json()["backup"]["kind"] == "heartbeat"

    await probe.publish(f"{base}/heartbeat/backup", b"")
    await probe.state(event["id"], lambda a: a["state"] == "resolved")
    await probe.wait_for(f"{base}/presence", lambda s: s.json()["backup"]["state"] == "ok")


async def test_no_beat_at_all_raises_after_every_plus_grace_from_start(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock
) -> None:
    settings = make_settings({"presence": {"heartbeats": HEARTBEATS}})
    await start_service(settings, clock=clock)
    await probe.wait_for(f"{probe.base}/presence", lambda s: "backup" in s.json())
    clock.advance(4201)
    await eventually(lambda: bool(created(probe, "heartbeat_missed", "backup")), what="raised")


async def test_unknown_and_retained_heartbeats_are_answered_on_error(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock
) -> None:
    base = probe.base
    # Retained: replayed at every subscribe, it would be a beat each time. A live
    # retained publish reaches subscribers without the flag, so only the replay shows it.
    await probe.publish(f"{base}/heartbeat/backup", b"x", retain=True)
    try:
        settings = make_settings({"presence": {"heartbeats": HEARTBEATS}})
        await start_service(settings, clock=clock)
        error = await probe.wait_for(f"{base}/error")
        assert "retained heartbeats are not accepted" in error.json()["error"]
        assert error.json()["topic"] == f"{base}/heartbeat/backup"
        await probe.publish(f"{base}/heartbeat/nope", b"x")
        error = await probe.wait_for(f"{base}/error", lambda s: "nope" in s.json()["error"])
        assert "unknown heartbeat 'nope'" in error.json()["error"]
        assert "backup" in error.json()["error"]
    finally:
        await probe.publish(f"{base}/heartbeat/backup", b"", retain=True)


async def test_a_heartbeat_removed_from_the_config_is_forgotten(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock
) -> None:
    both = {**HEARTBEATS, "sync": {"every": 60}}
    running = await start_service(make_settings({"presence": {"heartbeats": both}}), clock=clock)
    await probe.wait_for(f"{probe.base}/presence", lambda s: {"backup", "sync"} <= set(s.json()))
    await running.stop()
    settings = make_settings({"presence": {"heartbeats": HEARTBEATS}}, name="fewer.yaml")
    await start_service(settings, clock=clock)
    await probe.wait_for(f"{probe.base}/presence", lambda s: set(s.json()) == {"backup"})
