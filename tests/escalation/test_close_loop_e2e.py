"""Close the loop: however an alert is acknowledged or resolved, the mqtt channel's
recipients get `{"action": "clear"}` and `<base>/event` says so (the notify_phone
blueprint clears its phone notification from that event)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.presence.conftest import FIRMWARES, clear_retained
from tests.probe import Probe
from tests.test_blueprints import load
from tests.waits import ROOT

Z2M = FIRMWARES[0]


def _config(prefix: str) -> dict[str, Any]:
    level = [{"delay": 0, "channels": ["mqtt"], "groups": ["phones"]}]
    return {
        "channels": {"mqtt": {"enabled": True}},
        "recipients": {"groups": {"phones": {}}},
        "alerts": {"escalation": {"policies": dict.fromkeys(("p1", "p2", "p3", "default"), level)}},
        "presence": {"availability": [Z2M.config(prefix, **{"for": 10})]},
    }


def _blueprint_closing_events() -> set[str]:
    data = load(ROOT / "blueprints/automation/homealert/notify_phone.yaml")
    return {t["payload"] for t in data["triggers"] if t.get("id") == "closed" and "payload" in t}


async def _paged(probe: Probe, after: int = 0) -> str:
    topic = f"{probe.base}/notify/phones"
    seen = await probe.wait_for(topic, lambda s: s.json()["action"] == "notify", after=after)
    [alert_id] = seen.json()["alert_ids"]
    return str(alert_id)


@pytest.mark.parametrize("how", ["ack_command", "resolve_command", "device_resolved"])
async def test_every_way_of_closing_clears_the_page(
    how: str,
    make_settings: Any,
    start_service: Any,
    probe: Probe,
    clock: FakeClock,
    unique: str,
) -> None:
    await start_service(make_settings(_config(f"p{unique}")), clock=clock)
    alert = {"source": "garage", "type": "door_open", "severity": "high", "message": "Open"}
    await probe.alert(**alert)
    alert_id = await _paged(probe)
    if how == "ack_command":  # the HA button and the CLI publish this
        await probe.publish(f"{probe.base}/alert/{alert_id}/ack", {"by": "anna"})
        reason = "acknowledged"
    elif how == "resolve_command":
        await probe.publish(f"{probe.base}/alert/{alert_id}/resolve", b"")
        reason = "resolved"
    else:
        await probe.alert(**alert, status="resolved")
        reason = "resolved"
    clear = await probe.wait_for(
        f"{probe.base}/notify/phones", lambda s: s.json()["action"] == "clear"
    )
    assert clear.json()["alert_ids"] == [alert_id]
    assert clear.json()["reason"] == reason
    events = {e["event"] for e in probe.events() if e.get("id") == alert_id}
    assert events & _blueprint_closing_events()


async def test_a_device_back_online_clears_the_page(
    make_settings: Any, start_service: Any, probe: Probe, clock: FakeClock, unique: str
) -> None:
    prefix = f"p{unique}"
    await start_service(make_settings(_config(prefix)), clock=clock)
    topic = Z2M.topic_of(prefix, "nas")
    try:
        await probe.publish(topic, Z2M.offline, retain=True)
        await probe.wait_for(f"{probe.base}/presence", lambda s: "nas" in s.json())
        clock.advance(11)
        alert_id = await _paged(probe)
        await probe.publish(topic, Z2M.online, retain=True)
        clear = await probe.wait_for(
            f"{probe.base}/notify/phones", lambda s: s.json()["action"] == "clear"
        )
        assert clear.json()["alert_ids"] == [alert_id]
    finally:
        await clear_retained(probe, [topic])
