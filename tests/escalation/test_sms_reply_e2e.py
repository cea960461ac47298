"""Acknowledge by SMS reply: every SMS carries `Reply ACK <code>`, the service polls a
local server speaking Twilio's message list, and each reply is applied once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from homealert_mqtt.notify.sms_replies import parse_reply
from tests.conftest import FakeClock
from tests.escalation.twilio_standin import TwilioStandIn, serving_twilio
from tests.probe import Probe
from tests.waits import eventually

SID = "AC00000000000000000000000000000009"
OURS = "+15550000000"
ONCALL = "+15550000001"
STRANGER = "+15559999999"
CODE = re.compile(r" Reply ACK ([A-Z0-9]{4})$")


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStandIn]:
    async with serving_twilio() as standin:
        yield standin


def _config(twilio: TwilioStandIn, **extra: Any) -> dict[str, Any]:
    level = [{"delay": 0, "channels": ["sms"], "groups": ["oncall"]}]
    return {
        "channels": {
            "sms": {
                "enabled": True,
                "account_sid": SID,
                "auth_token": "reply-t0ken",
                "from_number": OURS,
                "api_base_url": twilio.url,
                "timeout": 5,
                "reply_ack": {"enabled": True, "poll": 0.2},
            }
        },
        "recipients": {"groups": {"oncall": {"sms": [ONCALL]}}},
        "alerts": {
            "escalation": {
                "policies": dict.fromkeys(("p1", "p2", "p3", "default"), level),
                "rate_limits": {"sms": {"count": 100}},
            }
        },
        **extra,
    }


async def _page(probe: Probe, twilio: TwilioStandIn, kind: str) -> tuple[str, str]:
    """Raise an alert; returns its id and the code its SMS carried."""
    before = len(twilio.sent)
    await probe.alert(source="house", type=kind, severity="critical", message=kind)
    seen = await probe.wait_for(
        f"{probe.base}/event",
        lambda s: s.json()["event"] == "created" and s.json()["type"] == kind,
    )
    await eventually(lambda: len(twilio.sent) > before, what=f"SMS for {kind}")
    body = twilio.sent[-1]["Body"]
    assert len(body) <= 160
    found = CODE.search(body)
    assert found is not None, body
    return str(seen.json()["id"]), found.group(1)


async def test_replies_acknowledge_by_code_or_last_page_and_strangers_are_ignored(
    make_settings: Any,
    start_service: Any,
    probe: Probe,
    clock: FakeClock,
    twilio: TwilioStandIn,
    caplog: Any,
) -> None:
    caplog.set_level("INFO")
    settings = make_settings(_config(twilio))
    await start_service(settings, clock=clock)
    leak, leak_code = await _page(probe, twilio, "water_leak")
    smoke, smoke_code = await _page(probe, twilio, "smoke")
    assert leak_code != smoke_code

    twilio.reply(STRANGER, OURS, "ACK")
    twilio.reply(STRANGER, OURS, f"ACK {leak_code}")
    twilio.reply(ONCALL, OURS, f"ack {leak_code.lower()} on my way")
    state = await probe.state(leak, lambda a: a["state"] == "acknowledged")
    assert state["acknowledged_by"] == f"sms:{ONCALL}"
    assert "never paged" in caplog.text
    assert twilio.listed[-1]["To"] == OURS
    assert any(key.startswith("DateSent") for key in twilio.listed[-1])

    # A bare ACK: what the last SMS to that number was about.
    twilio.reply(ONCALL, OURS, "Ack")
    state = await probe.state(smoke, lambda a: a["state"] == "acknowledged")
    assert state["acknowledged_by"] == f"sms:{ONCALL}"
    await asyncio.sleep(0.5)  # more polls: the stranger's replies still changed nothing
    assert [e["id"] for e in probe.events("acknowledged")].count(leak) == 1


async def test_each_reply_applied_once_across_replicas_and_restarts(
    make_settings: Any,
    start_service: Any,
    probe: Probe,
    clock: FakeClock,
    twilio: TwilioStandIn,
    caplog: Any,
    unique: str,
) -> None:
    caplog.set_level("INFO")
    first = make_settings(_config(twilio))
    second = make_settings(
        _config(twilio, mqtt={"client_id": f"svc2-{unique}"}), name="second.yaml"
    )
    one = await start_service(first, clock=clock)
    await start_service(second, clock=clock)
    alert_id, code = await _page(probe, twilio, "door_open")
    twilio.reply(ONCALL, OURS, f"ACK {code}")
    await probe.state(alert_id, lambda a: a["state"] == "acknowledged")
    await asyncio.sleep(1.0)  # both replicas polled the same list several times
    await one.stop()
    await start_service(first, clock=clock)
    await asyncio.sleep(1.0)
    applied = [r for r in caplog.records if r.getMessage().startswith("SMS ACK from")]
    assert len(applied) == 1, [r.getMessage() for r in applied]
    assert [e["id"] for e in probe.events("acknowledged")] == [alert_id]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("ACK", None),
        ("ack", None),
        ("  Ack please", None),  # "please" is not a 4-character word
        ("ACK 7K2Q", "7K2Q"),
        ("ack: 7k2q thanks", "7K2Q"),
        ("ACK sure", "SURE"),  # a candidate; no such code means a bare ACK
    ],
)
def test_parse_reply(body: str, code: str | None) -> None:
    answer = parse_reply(body)
    assert answer is not None
    assert answer.code == code


@pytest.mark.parametrize("body", ["", "yes", "acknowledge", "back", "NACK"])
def test_not_an_ack(body: str) -> None:
    assert parse_reply(body) is None
