"""The pipeline through MQTT, end to end: real broker, real Redis, service in-process."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import FakeClock
from tests.probe import Probe

ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,95}$")
LEAK = {"source": "basement", "type": "water_leak", "severity": "critical", "message": "Water!"}


async def created(probe: Probe, after: int = 0) -> dict[str, Any]:
    seen = await probe.wait_for(
        f"{probe.base}/event", lambda s: s.json()["event"] == "created", after=after
    )
    return seen.json()  # type: ignore[no-any-return]


async def test_alert_creates_retained_state_group_summary_and_event(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    await probe.alert(**LEAK)
    event = await created(probe)
    alert_id = event["id"]
    assert ID.match(alert_id)
    state = await probe.state(alert_id, lambda s: True)
    # Nobody is notified at level 0 here (channels off): the alert starts active.
    assert state["state"] == "active"
    assert state["escalation_level"] == 0
    assert state["priority"] == "P1"
    assert state["count"] == 1
    assert state["message"] == "Water!"
    assert state["first_seen"].endswith("Z")
    retained = probe.last(f"{probe.base}/alert/{alert_id}")
    assert retained is not None
    group = await probe.wait_for(f"{probe.base}/group/{state['group_id']}")
    assert group.json()["alert_ids"] == [alert_id]
    assert group.json()["highest_priority"] == "P1"
    summary = await probe.wait_for(f"{probe.base}/summary", lambda s: s.json()["active"] == 1)
    assert summary.json()["highest_priority"] == "P1"
    assert summary.json()["alerts"] == [alert_id]
    assert summary.json()["by_priority"]["P1"] == 1


async def test_repeats_are_deduplicated_and_priority_only_rises(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(
        make_settings({"alerts": {"deduplication": {"attributes": ["source", "type"]}}})
    )
    await probe.alert(source="nas", type="disk_space", severity="low", message="80%")
    alert_id = (await created(probe))["id"]
    for message, severity in (("85%", "high"), ("90%", "low")):
        await probe.alert(source="nas", type="disk_space", severity=severity, message=message)
    state = await probe.state(alert_id, lambda s: s["count"] == 3)
    assert state["priority"] == "P2"  # raised by the "high" repeat, not lowered again
    assert state["message"] == "90%"
    assert len(await probe.wait_events("deduplicated", 2)) == 2
    assert len(probe.events("created")) == 1


async def test_dedup_key_replaces_the_fingerprint(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    await probe.alert(source="a", type="x", severity="low", dedup_key="door-1")
    alert_id = (await created(probe))["id"]
    await probe.alert(source="a", type="x", severity="critical", dedup_key="door-1")
    state = await probe.state(alert_id, lambda s: s["count"] == 2)
    assert state["priority"] == "P1"


async def test_topic_source_and_explicit_priority(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    await probe.publish(f"{probe.base}/in/garage.door", {"type": "open", "priority": "p2"})
    event = await created(probe)
    state = await probe.state(event["id"], lambda s: True)
    assert state["source"] == "garage.door"
    assert state["priority"] == "P2"
    assert state["severity"] is None


async def test_unknown_severity_is_p5_and_unknown_fields_are_kept(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    await probe.alert(source="s", type="t", severity="apocalyptic", colour="red")
    state = await probe.state((await created(probe))["id"], lambda s: True)
    assert state["priority"] == "P5"
    assert state["attributes"] == {"colour": "red"}


async def test_status_resolved_resolves_the_open_alert(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    await probe.alert(**LEAK)
    alert_id = (await created(probe))["id"]
    await probe.alert(**LEAK, status="resolved")
    state = await probe.state(alert_id, lambda s: s["state"] == "resolved")
    assert state["resolved_at"] is not None
    summary = await probe.wait_for(
        f"{probe.base}/summary", lambda s: s.json()["active"] == 0 and not s.json()["alerts"]
    )
    assert summary.json()["highest_priority"] is None
    # Resolving again: nothing open with that fingerprint.
    await probe.alert(**LEAK, status="resolved")
    error = await probe.wait_for(f"{probe.base}/error")
    assert "no open alert" in error.json()["error"]


async def test_repeat_soon_after_resolve_reopens_later_one_is_new(
    make_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    await start_service(make_settings({"alerts": {"deduplication": {"window": 300}}}), clock=clock)
    await probe.alert(**LEAK)
    first = (await created(probe))["id"]
    await probe.alert(**LEAK, status="resolved")
    await probe.state(first, lambda s: s["state"] == "resolved")
    clock.advance(299)
    mark = len(probe.seen)
    await probe.alert(**LEAK)
    state = await probe.state(first, lambda s: s["state"] == "active", after=mark)
    assert state["count"] == 2
    assert state["resolved_at"] is None
    assert await probe.wait_events("reopened", 1)
    await probe.alert(**LEAK, status="resolved")
    await probe.state(first, lambda s: s["state"] == "resolved" and s["count"] == 2)
    clock.advance(301)
    mark = len(probe.seen)
    await probe.alert(**LEAK)
    second = (await created(probe, after=mark))["id"]
    assert second != first
    assert second.startswith(first)  # the fingerprint's second occurrence: "<id>-2"


async def test_grouping_window_and_max_size(
    make_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings = make_settings(
        {
            "alerts": {
                "deduplication": {"attributes": ["source", "type", "attributes.disk"]},
                "grouping": {"window": 60, "max_group_size": 3},
            }
        }
    )
    await start_service(settings, clock=clock)
    ids = []
    for disk in range(4):
        mark = len(probe.seen)
        await probe.alert(source="nas", type="smart", attributes={"disk": disk})
        ids.append((await created(probe, after=mark))["id"])
    states = [await probe.state(i, lambda s: True) for i in ids]
    groups = [s["group_id"] for s in states]
    assert groups[0] == groups[1] == groups[2]
    assert groups[3] != groups[0]  # the first group was full
    group = await probe.wait_for(
        f"{probe.base}/group/{groups[0]}", lambda s: s.json()["count"] == 3
    )
    assert group.json()["alert_ids"] == ids[:3]
    assert len(await probe.wait_events("grouped", 2)) == 2
    clock.advance(61)
    mark = len(probe.seen)
    await probe.alert(source="nas", type="smart", attributes={"disk": 9})
    late = await probe.state((await created(probe, after=mark))["id"], lambda s: True)
    assert late["group_id"] not in (groups[0], groups[3])  # the window had closed


async def test_retention_removes_keys_and_clears_retained_topics(
    make_settings, start_service, probe: Probe, clock: FakeClock, redis_server
) -> None:
    settings = make_settings({"alerts": {"retention": {"resolved": 10, "new": 100}}})
    running = await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = (await created(probe))["id"]
    state = await probe.state(alert_id, lambda s: s["state"] == "active")
    await probe.alert(**LEAK, status="resolved")
    await probe.state(alert_id, lambda s: s["state"] == "resolved")
    clock.advance(11)
    await probe.wait_for(f"{probe.base}/alert/{alert_id}", lambda s: s.payload == b"")
    await probe.wait_for(f"{probe.base}/group/{state['group_id']}", lambda s: s.payload == b"")
    assert (await probe.wait_events("expired", 1))[0]["id"] == alert_id
    # Nothing of the alert or its group is left; bookkeeping (history, delivery keys,
    # rate windows) is bounded and expires by itself.
    redis = running.service.redis
    keys = [k async for k in redis.scan_iter(match=f"{{{settings.redis.key_prefix}}}:*")]
    kept = [k.decode() for k in keys if alert_id.encode() in k or state["group_id"].encode() in k]
    lasting = [k for k in kept if await redis.pttl(k) < 0 and ":history" not in k]
    assert lasting == [], lasting


async def test_open_alert_expires_after_its_state_retention(
    make_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    # The escalation engine makes a new alert active at once: both states keep it 50 s.
    settings = make_settings({"alerts": {"retention": {"new": 50, "active": 50}}})
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = (await created(probe))["id"]
    # Let the escalation engine activate it first: that transition restarts retention.
    await probe.state(alert_id, lambda s: s["state"] == "active")
    clock.advance(40)
    await probe.alert(**LEAK)  # a repeat restarts the retention clock
    await probe.state(alert_id, lambda s: s["count"] == 2)
    clock.advance(40)
    await probe.alert(source="other", type="x")
    await created(probe, after=len(probe.seen) - 1)
    assert probe.last(f"{probe.base}/alert/{alert_id}").payload != b""  # type: ignore[union-attr]
    clock.advance(11)
    await probe.wait_for(f"{probe.base}/alert/{alert_id}", lambda s: s.payload == b"")


async def test_dedup_disabled_makes_every_alert_new(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings({"alerts": {"deduplication": {"enabled": False}}}))
    for _ in range(3):
        await probe.alert(**LEAK)
    assert len({e["id"] for e in await probe.wait_events("created", 3)}) == 3
