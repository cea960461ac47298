"""An alert storm against the default SMS rate limit (5 an hour per recipient): five
pages at once, the rest held back and sent as one digest when the window reopens."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from homealert_mqtt.config import Settings
from homealert_mqtt.config.settings import RateLimit
from tests.conftest import FakeClock
from tests.escalation.conftest import PEOPLE, channel_config
from tests.escalation.sends import sends, settle, wait_sends
from tests.notify.conftest import HttpRecorder, SmtpRecorder
from tests.probe import Probe

STORM = 50
ONCALL = PEOPLE["oncall"][2]


def storm_config(smtp: SmtpRecorder, http: HttpRecorder) -> dict[str, Any]:
    """No `rate_limits` in the file: the shipped limits apply."""
    return {
        "channels": channel_config(smtp, http),
        "recipients": {"groups": {name: {"sms": [p[2]]} for name, p in PEOPLE.items()}},
        "alerts": {
            "grouping": {"enabled": False},
            "escalation": {
                "policies": {"p1": [{"delay": 0, "channels": ["sms"], "groups": ["oncall"]}]}
            },
        },
    }


async def test_a_storm_pages_five_then_one_digest_for_the_rest(
    make_settings: Callable[..., Settings],
    smtp_server: Callable[..., SmtpRecorder],
    http_server: HttpRecorder,
    start_service: Callable[..., Any],
    probe: Probe,
    clock: FakeClock,
) -> None:
    smtp = smtp_server()
    settings = make_settings(storm_config(smtp, http_server))
    assert settings.alerts.escalation.rate_limits["sms"] == RateLimit(count=5, period=3600)
    running = await start_service(settings, clock=clock)
    store = running.service.escalation.store
    for n in range(STORM):
        await probe.alert(source="storm", type=f"t{n}", severity="critical")
    ids = [e["id"] for e in await probe.wait_events("created", STORM)]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not all([await store.attempts(i) for i in ids]):  # one attempt each, recorded
        assert loop.time() < deadline, "not every alert's delivery was tried within 10 s"
        await asyncio.sleep(0.05)
    await settle()
    first = sends(smtp, http_server)
    assert len(first) == 5
    paged = {i for i in ids if any(i in row.text for row in first)}
    assert len(paged) == 5
    held = [i for i in ids if i not in paged]
    for alert_id in ids:
        outcomes = [a["outcome"] for a in await store.attempts(alert_id)]
        assert outcomes == (["sent"] if alert_id in paged else ["deferred"]), alert_id

    clock.advance(3599)
    await settle()
    assert len(sends(smtp, http_server)) == 5
    clock.advance(1)  # the hour's window reopens
    await wait_sends(smtp, http_server, 6)
    await settle()
    rows = sends(smtp, http_server)
    assert len(rows) == 6
    digest = rows[5]
    assert digest.recipient == ONCALL
    named = re.findall(r"\((storm-t\d+-[a-z0-9]+)\)", digest.text)
    assert named, digest.text  # as many as 160 characters hold...
    assert set(named) <= set(held), digest.text  # ... of those held back
    for alert_id in held:
        attempts = await store.attempts(alert_id)  # newest first
        assert [a["outcome"] for a in attempts] == ["sent", "deferred"], alert_id
    await settle()
    assert len(sends(smtp, http_server)) == 6
