"""ack / resolve / group ack / ack_all over MQTT: idempotent, recorded, reported."""

from __future__ import annotations

from typing import Any

from tests.probe import Probe


async def open_alert(probe: Probe, **fields: Any) -> str:
    mark = len(probe.seen)
    await probe.alert(**{"source": "s", "type": "t", **fields})
    seen = await probe.wait_for(
        f"{probe.base}/event", lambda s: s.json()["event"] == "created", after=mark
    )
    return str(seen.json()["id"])


async def test_ack_records_who_and_when_and_is_idempotent(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    alert_id = await open_alert(probe, severity="critical")
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", {"by": "anna", "note": "on it"})
    state = await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
    assert state["acknowledged_by"] == "anna"
    assert state["ack_note"] == "on it"
    assert state["acknowledged_at"] is not None
    assert state["next_escalation_at"] is None
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", b"bob")
    await probe.publish(f"{probe.base}/alert/{alert_id}/resolve", b"bob")
    resolved = await probe.state(alert_id, lambda s: s["state"] == "resolved")
    assert resolved["acknowledged_by"] == "anna"  # the second ack changed nothing
    assert resolved["resolved_by"] == "bob"
    assert probe.errors() == []
    assert len(probe.events("acknowledged")) == 1
    # Summaries are coalesced: the last one counts the alert as neither open nor acked.
    summary = await probe.wait_for(
        f"{probe.base}/summary", lambda s: s.json()["open"] == 0 and not s.json()["alerts"]
    )
    assert summary.json()["acknowledged"] == 0


async def test_plain_text_and_empty_ack(make_settings, start_service, probe: Probe) -> None:
    await start_service(make_settings())
    first = await open_alert(probe, type="a")
    second = await open_alert(probe, type="b")
    await probe.publish(f"{probe.base}/alert/{first}/ack", b"carl")
    await probe.publish(f"{probe.base}/alert/{second}/ack", b"")
    assert (await probe.state(first, lambda s: s["state"] == "acknowledged"))[
        "acknowledged_by"
    ] == "carl"
    assert (await probe.state(second, lambda s: s["state"] == "acknowledged"))[
        "acknowledged_by"
    ] is None


async def test_commands_on_resolved_alerts_are_errors(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    alert_id = await open_alert(probe)
    await probe.publish(f"{probe.base}/alert/{alert_id}/resolve", b"")
    await probe.state(alert_id, lambda s: s["state"] == "resolved")
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", b"x")
    error = await probe.wait_for(f"{probe.base}/error")
    assert "already resolved" in error.json()["error"]
    await probe.publish(f"{probe.base}/alert/{alert_id}/resolve", b"x")
    await probe.wait_for(
        f"{probe.base}/error", lambda s: s is not error, after=probe.seen.index(error) + 1
    )


async def test_group_ack_and_ack_all(make_settings, start_service, probe: Probe) -> None:
    settings = make_settings(
        {"alerts": {"deduplication": {"attributes": ["source", "type", "message"]}}}
    )
    await start_service(settings)
    grouped = [
        await open_alert(probe, source="nas", type="smart", message=f"disk {i}") for i in range(3)
    ]
    other = await open_alert(probe, source="door", type="open")
    early = await open_alert(probe, source="window", type="open")
    await probe.publish(f"{probe.base}/alert/{early}/ack", {"by": "early"})
    await probe.state(early, lambda s: s["state"] == "acknowledged")
    await probe.publish(f"{probe.base}/alert/{grouped[2]}/resolve", b"")
    await probe.state(grouped[2], lambda s: s["state"] == "resolved")
    group_id = (await probe.state(grouped[0], lambda s: True))["group_id"]
    await probe.publish(f"{probe.base}/group/{group_id}/ack", {"by": "dora"})
    for alert_id in grouped[:2]:
        state = await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
        assert state["acknowledged_by"] == "dora"
    group = await probe.wait_for(
        f"{probe.base}/group/{group_id}", lambda s: s.json()["state"] == "acknowledged"
    )
    assert group.json()["count"] == 3
    await probe.publish(f"{probe.base}/ack_all", b"eve")
    assert (await probe.state(other, lambda s: s["state"] == "acknowledged"))[
        "acknowledged_by"
    ] == "eve"
    summary = await probe.wait_for(
        f"{probe.base}/summary", lambda s: s.json()["active"] == 0 and s.json()["acknowledged"] == 4
    )
    assert summary.json()["by_priority"]["P5"] == 4
    # ack_all left the earlier ack as it was
    assert probe.last(f"{probe.base}/alert/{early}").json()["acknowledged_by"] == "early"  # type: ignore[union-attr]
    assert probe.last(f"{probe.base}/alert/{grouped[2]}").json()["state"] == "resolved"  # type: ignore[union-attr]
    assert probe.errors() == []
