"""Silence and snooze commands over MQTT: what they store, and bad input answered on
`<base>/error` without changing anything."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.noise.conftest import LEAK
from tests.probe import Probe

YEAR = 365 * 24 * 3600


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"matchers": {}, "duration": 60}, "empty matcher"),
        ({"matchers": {"colour": "red"}, "duration": 60}, "matchers.colour: unknown field"),
        ({"matchers": {"source": 5}, "duration": 60}, "matchers.source: pattern must be a string"),
        ({"matchers": ["source"], "duration": 60}, "matchers: expected an object"),
        ({"matchers": {"source": "x"}, "duration": YEAR + 1}, "duration: at most a year"),
        ({"matchers": {"source": "x"}}, "exactly one of duration"),
        ({"matchers": {"source": "x"}, "duration": 0}, "duration: must be more than 0"),
        (
            {
                "matchers": {"source": "x"},
                "starts_at": "2030-01-02T00:00:00Z",
                "ends_at": "2030-01-01T00:00:00Z",
            },
            "ends_at: must be after starts_at",
        ),
        (
            {
                "matchers": {"source": "x"},
                "starts_at": "2030-01-01T00:00:00Z",
                "ends_at": "2031-01-02T00:00:00Z",
            },
            "at most a year",
        ),
        ({"matchers": {"source": "x"}, "ends_at": "soon"}, "ends_at: not an ISO 8601 time"),
        ({"matchers": {"source": "x"}, "duration": 60, "colour": 1}, "unknown key(s): colour"),
        ("not json", "not JSON"),
    ],
)
async def test_a_bad_silence_is_answered_on_error_and_stores_nothing(
    make_settings, start_service, probe: Probe, body: Any, reason: str
) -> None:
    running = await start_service(make_settings())
    topic = f"{probe.base}/silence/bad/set"
    await probe.publish(topic, body if isinstance(body, dict) else body.encode())
    error = await probe.wait_for(f"{probe.base}/error")
    assert reason in error.json()["error"]
    assert error.json()["topic"] == topic
    keys = running.service.keys
    assert not await running.service.redis.exists(keys.silence("bad"))
    assert probe.on(f"{probe.base}/silence/bad") == []


async def test_a_bad_silence_id_is_refused(make_settings, start_service, probe: Probe) -> None:
    await start_service(make_settings())
    await probe.publish(
        f"{probe.base}/silence/Bad.Id/set", {"matchers": {"id": "x"}, "duration": 5}
    )
    error = await probe.wait_for(f"{probe.base}/error")
    assert "silence id" in error.json()["error"]


async def test_replacing_a_silence_takes_it_off_the_alerts_it_no_longer_matches(
    make_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    await start_service(make_settings(), clock=clock)
    await probe.publish(
        f"{probe.base}/silence/s/set", {"matchers": {"source": "basement"}, "duration": 600}
    )
    await probe.wait_for(f"{probe.base}/silence/s")
    await probe.alert(**LEAK)
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    alert_id = created.json()["id"]
    await probe.state(alert_id, lambda s: s["silenced_by"] == ["s"])
    await probe.publish(
        f"{probe.base}/silence/s/set", {"matchers": {"source": "garage"}, "duration": 600}
    )
    await probe.state(alert_id, lambda s: s["silenced_by"] == [])
    assert len(await probe.wait_events("unsilenced", 1)) == 1


async def test_snooze_silences_one_alert_for_the_time_asked(
    make_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    await start_service(make_settings(), clock=clock)
    await probe.alert(**LEAK)
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    alert_id = created.json()["id"]
    await probe.publish(f"{probe.base}/alert/{alert_id}/snooze", {"for": 120, "by": "me"})
    silence = await probe.wait_for(f"{probe.base}/silence/snooze-{alert_id}")
    assert silence.json()["matchers"] == {"id": alert_id}
    assert silence.json()["created_by"] == "me"
    await probe.state(alert_id, lambda s: s["silenced_by"] == [f"snooze-{alert_id}"])
    # A bare number works too, and replaces the snooze.
    await probe.publish(f"{probe.base}/alert/{alert_id}/snooze", b"30")
    await probe.wait_for(
        f"{probe.base}/silence/snooze-{alert_id}",
        lambda s: bool(s.payload) and s.json()["ends_at"] != silence.json()["ends_at"],
    )
    clock.advance(30)
    await probe.wait_for(f"{probe.base}/silence/snooze-{alert_id}", lambda s: s.payload == b"")
    await probe.state(alert_id, lambda s: s["silenced_by"] == [])


@pytest.mark.parametrize(
    ("target", "payload", "reason"),
    [
        ("nope", b"60", "no alert 'nope'"),
        (None, b"-5", "must be more than 0"),
        (None, b"abc", "not a number or JSON"),
        (None, json.dumps({"for": 10**9}).encode(), "at most a year"),
    ],
)
async def test_a_bad_snooze_is_answered_on_error(
    make_settings, start_service, probe: Probe, target: str | None, payload: bytes, reason: str
) -> None:
    await start_service(make_settings())
    await probe.alert(**LEAK)
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    alert_id = target or created.json()["id"]
    await probe.publish(f"{probe.base}/alert/{alert_id}/snooze", payload)
    error = await probe.wait_for(f"{probe.base}/error")
    assert reason in error.json()["error"]
    assert probe.on(f"{probe.base}/silence/snooze-{alert_id}") == []


async def test_snoozing_a_resolved_alert_is_refused(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    await probe.alert(**LEAK)
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    alert_id = created.json()["id"]
    await probe.alert(**LEAK, status="resolved")
    await probe.state(alert_id, lambda s: s["state"] == "resolved")
    await probe.publish(f"{probe.base}/alert/{alert_id}/snooze", b"60")
    error = await probe.wait_for(f"{probe.base}/error")
    assert "it is resolved" in error.json()["error"]
