"""Escalation policies end to end: real broker, Redis, SMTP server, Slack/Twilio recorder."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.conftest import FakeClock
from tests.escalation.sends import Sent, sends, settle, wait_sends
from tests.probe import Probe

LEAK = {"source": "basement", "type": "water_leak", "severity": "critical", "message": "Water!"}


async def created_id(probe: Probe, after: int = 0) -> str:
    seen = await probe.wait_for(
        f"{probe.base}/event", lambda s: s.json()["event"] == "created", after=after
    )
    return str(seen.json()["id"])


def by_channel(rows: list[Sent]) -> Counter[tuple[str, str]]:
    return Counter((r.channel, r.recipient) for r in rows)


async def test_p1_walks_all_three_levels_in_order(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings()
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = await created_id(probe)
    # Level 0 at once: email, slack, sms to oncall.
    level0 = await wait_sends(smtp, http, 3)
    assert by_channel(level0) == Counter(
        {
            ("email", "oncall@home.test"): 1,
            ("slack", "#alerts-critical"): 1,
            ("sms", "+15550000001"): 1,
        }
    )
    assert all(alert_id in row.text for row in level0)
    state = await probe.state(alert_id, lambda s: s["state"] == "active")
    assert state["escalation_level"] == 0
    assert state["next_escalation_at"] is not None
    await settle()
    assert len(sends(smtp, http)) == 3  # nothing early
    # Level 1 at 15 minutes: email, slack, sms, phone to oncall and manager.
    clock.advance(900)
    rows = await wait_sends(smtp, http, 3 + 8)
    level1 = by_channel(rows) - by_channel(level0)
    assert level1[("phone", "+15550000001")] == 1
    assert level1[("phone", "+15550000002")] == 1
    assert level1[("email", "manager@home.test")] == 1
    state = await probe.state(alert_id, lambda s: s["state"] == "escalated")
    assert state["escalation_level"] == 1
    assert (await probe.wait_events("escalated", 1))[0]["id"] == alert_id
    # Level 2 at 30 minutes: manager and director.
    clock.advance(900)
    before = by_channel(rows)
    rows = await wait_sends(smtp, http, 3 + 8 + 8)
    level2 = by_channel(rows) - before
    assert ("sms", "+15550000003") in level2
    assert ("sms", "+15550000001") not in level2
    state = await probe.state(alert_id, lambda s: s["escalation_level"] == 2)
    assert state["next_escalation_at"] is None
    clock.advance(3600)
    await settle()
    assert len(sends(smtp, http)) == 19  # the policy has no fourth level and no repeat
    slack = [r for r in rows if r.channel == "slack"]
    assert "@oncall" in slack[0].text


async def test_ack_between_levels_stops_escalation(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings()
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = await created_id(probe)
    await wait_sends(smtp, http, 3)
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", {"by": "anna"})
    await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
    clock.advance(1900)
    await settle()
    assert len(sends(smtp, http)) == 3


async def test_resolve_sends_a_notice_to_whoever_was_paged(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings()
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = await created_id(probe)
    await wait_sends(smtp, http, 3)
    await probe.alert(**LEAK, status="resolved")
    rows = await wait_sends(smtp, http, 6)
    notices = [r for r in rows if "resolved" in r.text.lower()]
    pages = [r for r in rows if "resolved" not in r.text.lower()]
    assert by_channel(notices) == by_channel(pages)
    clock.advance(1900)
    await settle()
    assert len(sends(smtp, http)) == 6
    assert alert_id


async def test_a_group_of_ten_makes_one_message_per_level(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(
        {
            "alerts": {
                "deduplication": {"attributes": ["source", "type", "attributes.disk"]},
                "escalation": {
                    "policies": {
                        "p2": [
                            {"delay": 0, "channels": ["sms"], "groups": ["oncall"]},
                            {"delay": 600, "channels": ["sms"], "groups": ["manager"]},
                        ]
                    }
                },
            }
        }
    )
    await start_service(settings, clock=clock)
    for disk in range(10):
        await probe.alert(source="nas", type="smart", severity="high", attributes={"disk": disk})
    await probe.wait_events("created", 10)
    # Level 0: the first alert of the group pages at once; alerts that joined after that
    # page went out are folded into one digest per digest_interval. However the burst
    # falls across the engine's polls, that is at most two messages for ten alerts.
    first = await wait_sends(smtp, http, 1)
    assert first[0].text.startswith("[P2]")
    clock.advance(60)
    await settle()
    level0 = sends(smtp, http)
    assert 1 <= len(level0) <= 2, level0
    clock.advance(600)
    rows = await wait_sends(smtp, http, len(level0) + 1)
    await settle()
    rows = sends(smtp, http)
    level1 = [r for r in rows if r.recipient == "+15550000002"]
    assert len(level1) == 1, rows  # level 1: one message for the whole group
    assert len(rows) == len(level0) + 1


async def test_rate_limit_folds_a_burst_into_one_digest(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(
        {
            "alerts": {
                "grouping": {"enabled": False},
                "escalation": {
                    "policies": {"p1": [{"delay": 0, "channels": ["sms"], "groups": ["oncall"]}]},
                    "rate_limits": {"sms": {"count": 2, "period": 3600}},
                },
            }
        }
    )
    await start_service(settings, clock=clock)
    for n in range(5):
        await probe.alert(source="sensor", type=f"leak{n}", severity="critical")
    await probe.wait_events("created", 5)
    await wait_sends(smtp, http, 2)
    await settle()
    assert len(sends(smtp, http)) == 2
    clock.advance(3600)
    rows = await wait_sends(smtp, http, 3)
    await settle()
    rows = sends(smtp, http)
    assert len(rows) == 3
    digest = rows[2].text
    held = [e["id"] for e in probe.events("created")]
    assert sum(i in digest for i in held) >= 1  # one SMS names what was held back


async def test_failing_channel_is_retried_then_reported(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, _smtp, http = escalation_settings(
        {
            "alerts": {
                "escalation": {
                    "policies": {"p1": [{"delay": 0, "channels": ["slack"], "groups": ["oncall"]}]}
                }
            }
        }
    )
    http.answer(500, "boom")  # slack, first try
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert_id = await created_id(probe)
    notified = await probe.wait_for(
        f"{probe.base}/event",
        lambda s: s.json()["event"] == "notified" and s.json().get("channel") == "slack",
        timeout=15,
    )
    assert notified.json()["id"] == alert_id
    slack_posts = [r for r in http.requests if r.path.startswith("/slack")]
    assert len(slack_posts) == 2  # failed once (500), then delivered


async def test_permanent_failure_emits_notify_failed(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, _smtp, http = escalation_settings(
        {
            "alerts": {
                "escalation": {
                    "policies": {"p1": [{"delay": 0, "channels": ["slack"], "groups": ["oncall"]}]}
                }
            }
        }
    )
    for _ in range(5):
        http.answer(403, "invalid_token")
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    failed = await probe.wait_for(
        f"{probe.base}/event", lambda s: s.json()["event"] == "notify_failed", timeout=15
    )
    assert failed.json()["channel"] == "slack"
    assert len([r for r in http.requests if r.path.startswith("/slack")]) == 1  # 4xx: no retry


def _policy(*levels: tuple[int, list[str], list[str]]) -> list[dict[str, Any]]:
    return [{"delay": d, "channels": c, "groups": g} for d, c, g in levels]
