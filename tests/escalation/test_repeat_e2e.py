"""`repeat`: a policy in its mapping form re-sends its last level every `repeat` seconds
until someone acknowledges the alert."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from homealert_mqtt.models import iso
from tests.conftest import FakeClock
from tests.escalation.conftest import PEOPLE
from tests.escalation.sends import sends, settle, wait_sends
from tests.escalation.test_policies_e2e import LEAK, created_id
from tests.probe import Probe

ONCALL, MANAGER = PEOPLE["oncall"][2], PEOPLE["manager"][2]
REPEATING = {
    "alerts": {
        "grouping": {"enabled": False},
        "escalation": {
            "policies": {
                "p1": {
                    "levels": [
                        {"delay": 0, "channels": ["sms"], "groups": ["oncall"]},
                        {"delay": 60, "channels": ["sms"], "groups": ["manager"]},
                    ],
                    "repeat": 30,
                }
            }
        },
    }
}


async def test_repeat_resends_the_last_level_until_ack(
    escalation_settings: Callable[..., Any],
    start_service: Callable[..., Any],
    probe: Probe,
    clock: FakeClock,
) -> None:
    settings, smtp, http = escalation_settings(REPEATING)
    assert settings.alerts.escalation.policies["p1"].repeat == 30
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = await created_id(probe)
    await wait_sends(smtp, http, 1)
    clock.advance(60)
    await wait_sends(smtp, http, 2)  # level 1
    await probe.state(alert_id, lambda s: s["state"] == "escalated" and s["next_escalation_at"])
    await _completed(probe, alert_id, clock)
    for rounds in (1, 2, 3):
        clock.advance(29)
        await settle()
        assert len(sends(smtp, http)) == 1 + rounds, "a repeat came early"
        clock.advance(1)
        rows = await wait_sends(smtp, http, 2 + rounds)
        assert rows[-1].recipient == MANAGER
        assert alert_id in rows[-1].text
        await _completed(probe, alert_id, clock)
    last = probe.last(f"{probe.base}/alert/{alert_id}")
    assert last is not None
    state = last.json()
    assert (state["state"], state["escalation_level"]) == ("escalated", 1)
    assert state["next_escalation_at"] is not None  # the next round

    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", {"by": "anna"})
    state = await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
    assert state["next_escalation_at"] is None
    for _ in range(3):
        clock.advance(30)
        await settle(0.3)
    await settle()
    assert Counter(r.recipient for r in sends(smtp, http)) == {ONCALL: 1, MANAGER: 4}


async def _completed(probe: Probe, alert_id: str, clock: FakeClock) -> None:
    """The send was recorded and the next round scheduled at the current (fake) time:
    moving the clock before that would push the next round later than the test counts."""
    now = iso(clock.now)
    await probe.state(alert_id, lambda s: s["last_notified_at"] == now)
