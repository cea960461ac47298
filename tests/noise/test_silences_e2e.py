"""Silences end to end: real broker, Redis and a recording Twilio; a fake clock."""

from __future__ import annotations

from typing import Any

from tests.conftest import FakeClock
from tests.escalation.sends import sends, settle, wait_sends
from tests.noise.conftest import LEAK, MANAGER, ONCALL, sms_policy
from tests.probe import Probe


def sms_to(smtp: Any, http: Any, number: str) -> int:
    return sum(1 for s in sends(smtp, http) if s.channel == "sms" and s.recipient == number)


async def silence(probe: Probe, silence_id: str, **body: Any) -> dict[str, Any]:
    after = len(probe.seen)
    await probe.publish(f"{probe.base}/silence/{silence_id}/set", body)
    seen = await probe.wait_for(
        f"{probe.base}/silence/{silence_id}", lambda s: bool(s.payload), after=after
    )
    return dict(seen.json())


async def created(probe: Probe) -> dict[str, Any]:
    seen = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    return await probe.state(seen.json()["id"], lambda s: True)


async def test_a_silenced_alert_is_stored_and_published_but_pages_nobody_until_it_ends(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy())
    await start_service(settings, clock=clock)
    state = await silence(
        probe,
        "boiler-work",
        matchers={"source": "basement", "type": "water*"},
        duration=600,
        by="dad",
        comment="fixing the boiler",
    )
    assert state["state"] == "active"
    assert state["matchers"] == {"source": "basement", "type": "water*"}
    assert state["created_by"] == "dad"
    await probe.alert(**LEAK)
    alert = await created(probe)
    assert alert["silenced_by"] == ["boiler-work"]
    assert alert["next_escalation_at"] is None
    assert (await probe.wait_events("silenced", 1))[0]["id"] == alert["id"]
    summary = await probe.wait_for(f"{probe.base}/summary", lambda s: s.json()["silenced"] == 1)
    assert summary.json()["active"] == 1
    clock.advance(599)
    await settle()
    assert sends(smtp, http) == []
    # The silence ends: its topic is cleared, the alert escalates from level 0 on.
    clock.advance(1)
    await wait_sends(smtp, http, 1)
    assert sms_to(smtp, http, ONCALL) == 1
    await probe.wait_for(f"{probe.base}/silence/boiler-work", lambda s: s.payload == b"")
    state = await probe.state(
        alert["id"], lambda s: s["silenced_by"] == [] and s["state"] == "active"
    )
    assert (await probe.wait_events("unsilenced", 1))[0]["id"] == alert["id"]
    # Level 1 is timed from the silence's end, not from when the alert came.
    clock.advance(899)
    await settle()
    assert sms_to(smtp, http, MANAGER) == 0
    clock.advance(1)
    await wait_sends(smtp, http, 2)
    assert sms_to(smtp, http, MANAGER) == 1


async def test_a_silence_made_after_the_page_stops_the_escalation_and_expiring_it_restarts_it(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy())
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    alert = await created(probe)
    await wait_sends(smtp, http, 1)
    await silence(probe, "quiet", matchers={"id": alert["id"]}, duration=3600)
    await probe.state(alert["id"], lambda s: s["silenced_by"] == ["quiet"])
    clock.advance(1800)
    await settle()
    assert sms_to(smtp, http, MANAGER) == 0  # level 1 held
    await probe.publish(f"{probe.base}/silence/quiet/expire", "")
    await probe.publish(f"{probe.base}/silence/quiet/expire", "")  # idempotent
    # Level 0 again (a new page, not held back by the first one's delivery record).
    await wait_sends(smtp, http, 2)
    assert sms_to(smtp, http, ONCALL) == 2
    await settle()
    assert len(sends(smtp, http)) == 2
    assert len(probe.events("unsilenced")) == 1


async def test_an_acknowledged_alert_does_not_escalate_when_its_silence_ends(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy())
    await start_service(settings, clock=clock)
    await silence(probe, "s1", matchers={"source": "base*"}, duration=60)
    await probe.alert(**LEAK)
    alert = await created(probe)
    await probe.publish(f"{probe.base}/alert/{alert['id']}/ack", {"by": "mum"})
    await probe.state(alert["id"], lambda s: s["state"] == "acknowledged")
    clock.advance(61)
    await probe.wait_for(f"{probe.base}/silence/s1", lambda s: s.payload == b"")
    await settle()
    assert sends(smtp, http) == []


async def test_a_pending_silence_starts_on_time(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy())
    await start_service(settings, clock=clock)
    start = clock.now + 60_000
    starts_at = f"{_iso(start)}"
    state = await silence(
        probe, "later", matchers={"source": "basement"}, starts_at=starts_at, duration=600
    )
    assert state["state"] == "pending"
    await probe.alert(**LEAK)
    alert = await created(probe)
    assert alert["silenced_by"] == []
    await wait_sends(smtp, http, 1)  # not on yet: paged
    clock.advance(60)
    later = await probe.wait_for(
        f"{probe.base}/silence/later", lambda s: bool(s.payload) and s.json()["state"] == "active"
    )
    assert later.json()["starts_at"] == starts_at
    await probe.state(alert["id"], lambda s: s["silenced_by"] == ["later"])
    clock.advance(900)
    await settle()
    assert sms_to(smtp, http, MANAGER) == 0


async def test_a_silence_ingest_did_not_know_of_still_holds_the_page(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    """Another replica wrote the silence a moment ago: this one's ingest missed it (here:
    ingest matches nothing), the gate before paging does not."""
    from homealert_mqtt.noise.matchers import Matcher  # noqa: PLC0415
    from homealert_mqtt.noise.silences import Silence  # noqa: PLC0415
    from homealert_mqtt.noise.store import SilenceStore  # noqa: PLC0415

    settings, smtp, http = escalation_settings(sms_policy())
    running = await start_service(settings, clock=clock)
    service = running.service
    service.ingest.silences_for = None
    await SilenceStore(service.store, clock).put(
        Silence("elsewhere", Matcher((("source", "basement"),)), clock.now, clock.now + 60_000)
    )
    await probe.alert(**LEAK)
    alert = await created(probe)
    assert alert["silenced_by"] == []
    await probe.state(alert["id"], lambda s: s["silenced_by"] == ["elsewhere"])
    await settle()
    assert sends(smtp, http) == []
    clock.advance(60)
    await wait_sends(smtp, http, 1)


def _iso(ms: int) -> str:
    from homealert_mqtt.models import iso  # noqa: PLC0415

    return str(iso(ms))
