"""Acknowledgements that do not go stale: the ack timeout, and a more urgent repeat."""

from __future__ import annotations

from tests.conftest import FakeClock
from tests.escalation.sends import sends, settle, wait_sends
from tests.noise.conftest import LEAK, MANAGER, ONCALL, sms_policy
from tests.probe import Probe


def sms_to(smtp, http, number: str) -> int:
    return sum(1 for s in sends(smtp, http) if s.channel == "sms" and s.recipient == number)


async def test_an_ack_still_open_after_the_timeout_goes_back_to_active_and_escalates(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    config = sms_policy()
    config["alerts"]["escalation"]["ack_timeout"] = 600
    settings, smtp, http = escalation_settings(config)
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = (await probe.wait_events("created", 1))[0]["id"]
    await wait_sends(smtp, http, 1)
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", {"by": "anna"})
    await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
    clock.advance(599)
    await settle()
    assert probe.events("unacknowledged") == []
    clock.advance(1)
    [event] = await probe.wait_events("unacknowledged", 1)
    assert event["id"] == alert_id
    state = await probe.state(alert_id, lambda s: s["state"] == "active")
    assert state["acknowledged_by"] is None
    await wait_sends(smtp, http, 2)  # level 0 again
    assert sms_to(smtp, http, ONCALL) == 2
    clock.advance(899)  # level 1 is timed from the ack going stale
    await settle()
    assert sms_to(smtp, http, MANAGER) == 0
    clock.advance(1)
    await wait_sends(smtp, http, 3)
    assert sms_to(smtp, http, MANAGER) == 1


async def test_without_a_timeout_an_ack_lasts(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, _smtp, _http = escalation_settings(sms_policy())
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = (await probe.wait_events("created", 1))[0]["id"]
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", b"")
    await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
    clock.advance(30 * 24 * 3600)
    await settle()
    assert probe.events("unacknowledged") == []


async def test_a_more_urgent_repeat_reopens_the_ack_with_the_new_priority(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy())
    await start_service(settings, clock=clock)
    # One fingerprint whatever the severity (severity is part of the default one).
    low = {**LEAK, "severity": "low", "dedup_key": "basement-leak"}
    await probe.alert(**low)
    alert_id = (await probe.wait_events("created", 1))[0]["id"]
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", b"anna")
    await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
    await settle()
    before = sms_to(smtp, http, ONCALL)
    # As urgent again: nothing changes.
    await probe.alert(**low)
    await probe.state(alert_id, lambda s: s["count"] == 2)
    assert probe.events("priority_raised") == []
    await probe.alert(**{**low, "severity": "critical"})  # P1
    [event] = await probe.wait_events("priority_raised", 1)
    assert (event["id"], event["priority"], event["state"]) == (alert_id, "P1", "active")
    state = await probe.state(alert_id, lambda s: s["state"] == "active")
    assert state["acknowledged_by"] is None
    await wait_sends(smtp, http, len(sends(smtp, http)) + 1)
    assert sms_to(smtp, http, ONCALL) == before + 1  # level 0 of P1's policy
    clock.advance(900)
    await wait_sends(smtp, http, len(sends(smtp, http)) + 1)
    assert sms_to(smtp, http, MANAGER) == 1
