"""Per-type behaviour end to end: hold-down, auto-resolve and latching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from homealert_mqtt.config import ConfigError, load_config
from tests.conftest import FakeClock
from tests.escalation.sends import sends, settle, wait_sends
from tests.noise.conftest import sms_policy
from tests.probe import Probe

DOOR = {"source": "garage", "type": "door_open", "severity": "critical", "message": "open"}
MOTION = {"source": "hall", "type": "motion", "severity": "critical", "message": "moved"}
SMOKE = {"source": "attic", "type": "smoke", "severity": "critical", "message": "smoke"}
TYPES = {"door_open": {"hold_down": 60}, "motion": {"auto_resolve": 120}, "smoke": {"latch": True}}


async def created(probe: Probe, count: int) -> str:
    return str((await probe.wait_events("created", count))[count - 1]["id"])


async def test_a_held_down_alert_pages_only_once_open_that_long(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy(types=TYPES))
    await start_service(settings, clock=clock)
    await probe.alert(**DOOR)
    first = await created(probe, 1)
    state = await probe.state(first, lambda s: True)
    assert state["state"] == "new"
    clock.advance(30)
    await probe.alert(**DOOR, status="resolved")  # shut within the hold-down
    await probe.state(first, lambda s: s["state"] == "resolved")
    clock.advance(60)
    await settle()
    assert sends(smtp, http) == []  # never paged, no "resolved" notice either
    # Open again later (a new alert once the dedup window is over): pages after 60 s.
    clock.advance(600)
    await probe.alert(**DOOR)
    second = await created(probe, 2)
    clock.advance(59)
    await settle()
    assert sends(smtp, http) == []
    await probe.state(second, lambda s: s["state"] == "new")
    clock.advance(1)
    await wait_sends(smtp, http, 1)
    await probe.state(second, lambda s: s["state"] == "active")


async def test_an_alert_not_repeated_resolves_itself(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, _smtp, _http = escalation_settings(sms_policy(types=TYPES))
    await start_service(settings, clock=clock)
    await probe.alert(**MOTION)
    alert_id = await created(probe, 1)
    clock.advance(100)
    await probe.alert(**MOTION)  # a repeat pushes the deadline back
    await probe.state(alert_id, lambda s: s["count"] == 2)
    clock.advance(119)
    await settle()
    assert probe.events("resolved") == []
    clock.advance(1)
    state = await probe.state(alert_id, lambda s: s["state"] == "resolved")
    assert state["resolved_by"] == "auto"
    assert (await probe.wait_events("resolved", 1))[0]["id"] == alert_id


async def test_a_latched_alert_stays_open_when_the_device_clears_it(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, _smtp, _http = escalation_settings(sms_policy(types=TYPES))
    await start_service(settings, clock=clock)
    await probe.alert(**SMOKE)
    alert_id = await created(probe, 1)
    clock.advance(5)
    await probe.alert(**SMOKE, status="resolved")
    [event] = await probe.wait_events("cleared", 1)
    assert event["id"] == alert_id
    state = await probe.state(alert_id, lambda s: s["cleared_at"] is not None)
    assert state["state"] in ("new", "active")
    assert state["cleared_at"] == "2027-01-15T08:00:05.000Z"
    await probe.publish(f"{probe.base}/alert/{alert_id}/resolve", b"dad")
    state = await probe.state(alert_id, lambda s: s["state"] == "resolved")
    assert state["resolved_by"] == "dad"


@pytest.mark.parametrize(
    ("types", "problem"),
    [
        ({"door": {"holddown": 5}}, "alerts.types.door.holddown: unknown key"),
        ({"door": {"hold_down": "5"}}, "alerts.types.door.hold_down: expected int"),
        ({"default": {"latch": "yes"}}, "alerts.types.default.latch: expected true or false"),
        ({"door": {"auto_resolve": -1}}, "alerts.types.door.auto_resolve: must be at least 0"),
    ],
)
def test_a_bad_type_setting_is_named_by_its_key_path(
    tmp_path: Path, types: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"alerts": {"types": types}}))
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


async def test_a_flapping_alert_pages_once_it_has_stayed_put_for_a_window(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    types = {"door_open": {"flapping": {"reopens": 2, "window": 600}}}
    settings, smtp, http = escalation_settings(sms_policy(types=types))
    await start_service(settings, clock=clock)

    def pages() -> list[str]:
        return [s.text for s in sends(smtp, http) if not s.text.startswith("RESOLVED")]

    async def flip(status: str, count: int) -> dict[str, Any]:
        clock.advance(1)
        await probe.alert(**DOOR, status=status)
        want = "resolved" if status == "resolved" else "open"
        return await probe.state(
            alert_id,
            lambda s: s["count"] == count and (s["state"] == "resolved") == (want == "resolved"),
        )

    await probe.alert(**DOOR)
    alert_id = await created(probe, 1)
    await wait_sends(smtp, http, 1)
    await flip("resolved", 1)
    state = await flip("firing", 2)  # re-opened once: pages as before
    assert state["flapping"] is False
    clock.advance(60)  # (a re-opened alert's level 0 waits out the digest interval)
    await wait_sends(smtp, http, len(sends(smtp, http)) + 1)
    paged = len(pages())
    assert paged == 2
    await flip("resolved", 2)
    state = await flip("firing", 3)  # twice within the window: flapping
    assert state["flapping"] is True
    assert state["next_escalation_at"] is None
    await flip("resolved", 3)
    await flip("firing", 4)  # still flapping; from here it stays put
    sent = len(sends(smtp, http))
    clock.advance(599)
    await settle()
    assert len(sends(smtp, http)) == sent  # nobody heard of it, resolves included
    assert len(pages()) == paged
    clock.advance(1)
    state = await probe.state(alert_id, lambda s: s["flapping"] is False)
    await wait_sends(smtp, http, sent + 1)
    assert len(pages()) == paged + 1  # once, with its current state
    assert state["state"] in ("new", "active")
