"""A resolve that leaves out fingerprint fields resolves the open alerts matching the
fields it gives (issue 13, point 11): matched and resolved inside ingest.lua, bounded."""

from __future__ import annotations

from typing import Any

from homealert_mqtt.store.alert_store import RESOLVE_MATCHING_MAX
from tests.probe import Probe
from tests.waits import store_for


async def states(probe: Probe, ids: list[str]) -> dict[str, str]:
    found = {}
    for alert_id in ids:
        last = probe.last(f"{probe.base}/alert/{alert_id}")
        assert last is not None
        found[alert_id] = last.json()["state"]
    return found


async def test_resolve_without_severity_resolves_the_source_and_type_it_names(
    make_settings, start_service, probe: Probe
) -> None:
    settings = make_settings()  # the default fingerprint: source, type, severity
    await start_service(settings)
    opened: list[dict[str, Any]] = [
        {"source": "basement", "type": "water_leak", "severity": "critical"},
        {"source": "basement", "type": "water_leak", "severity": "high"},
        {"source": "basement", "type": "smoke", "severity": "critical"},
        {"source": "garage", "type": "water_leak", "severity": "critical"},
    ]
    for alert in opened:
        await probe.alert(**alert)
    created = await probe.wait_events("created", 4)
    ids = [e["id"] for e in created]

    mark = len(probe.seen)
    await probe.alert(source="basement", type="water_leak", status="resolved")
    resolved = await probe.wait_events("resolved", 2)
    assert sorted(e["id"] for e in resolved) == sorted(ids[:2])
    for alert_id in ids[:2]:
        state = await probe.state(alert_id, lambda s: s["state"] == "resolved")
        assert state["resolved_by"] == "basement"
    assert not any(e["topic"] == f"{probe.base}/in" for e in probe.errors())
    async with store_for(settings) as store:
        assert sorted(await store.open_ids()) == sorted(ids[2:])
    assert len(probe.events("resolved")) == 2

    # Nothing open matches any more: an error that names the fields, no change.
    await probe.alert(source="basement", type="water_leak", status="resolved")
    error = await probe.wait_for(f"{probe.base}/error", after=mark)
    assert error.json()["error"] == (
        "status resolved, but no open alert has source='basement', type='water_leak'"
    )
    # The whole fingerprint still resolves exactly that one alert.
    await probe.alert(source="garage", type="water_leak", severity="critical", status="resolved")
    await probe.state(ids[3], lambda s: s["state"] == "resolved")
    assert (await states(probe, [ids[2]])) == {ids[2]: "active"}


async def test_attribute_fields_match_by_value_and_a_source_never_resolves_another(
    make_settings, start_service, probe: Probe
) -> None:
    dedup = ["source", "type", "attributes.zone", "attributes.floor"]
    await start_service(make_settings({"alerts": {"deduplication": {"attributes": dedup}}}))
    for source, zone, floor in (
        ("hub", "a", 1),
        ("hub", "a", 2),
        ("hub", "b", 1),
        ("other", "a", 1),
    ):
        await probe.alert(source=source, type="motion", attributes={"zone": zone, "floor": floor})
    ids = [e["id"] for e in await probe.wait_events("created", 4)]

    await probe.alert(source="hub", type="motion", status="resolved", attributes={"floor": 1})
    resolved = await probe.wait_events("resolved", 2)
    assert sorted(e["id"] for e in resolved) == sorted([ids[0], ids[2]])  # not "other"'s
    await probe.alert(source="hub", type="motion", status="resolved", attributes={"zone": "a"})
    await probe.wait_events("resolved", 3)
    assert (await states(probe, ids)) == {
        ids[0]: "resolved",
        ids[1]: "resolved",
        ids[2]: "resolved",
        ids[3]: "active",
    }


async def test_one_resolve_resolves_at_most_the_bound(
    make_settings, start_service, probe: Probe
) -> None:
    dedup = ["source", "type", "attributes.n"]
    grouping = {"enabled": False}
    settings = make_settings(
        {"alerts": {"deduplication": {"attributes": dedup}, "grouping": grouping}}
    )
    await start_service(settings)
    total = RESOLVE_MATCHING_MAX + 5
    for n in range(total):
        await probe.alert(source="farm", type="sensor", attributes={"n": n})
    await probe.wait_events("created", total, timeout=30)

    await probe.alert(source="farm", type="sensor", status="resolved")
    await probe.wait_events("resolved", RESOLVE_MATCHING_MAX, timeout=30)
    async with store_for(settings) as store:
        assert len(await store.open_ids()) == 5  # five beyond the bound
    await probe.alert(source="farm", type="sensor", status="resolved")
    await probe.wait_events("resolved", total, timeout=30)
    assert len({e["id"] for e in probe.events("resolved")}) == total
