"""The apprise channel in a policy, end to end: Apprise's json:// to a local recorder.
Its URL's secrets appear nowhere: not in logs, topics, events, the delivery log or the
metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from homealert_mqtt.clock import wall_ms
from homealert_mqtt.embedded import free_port
from homealert_mqtt.store.escalation_store import EscalationStore
from tests.conftest import FakeClock
from tests.escalation.conftest import HttpRecorder
from tests.probe import Probe
from tests.waits import eventually, store_for

PASSWORD = "Apprise-pw-9d8c7b"  # noqa: S105 - a test secret to hunt for
PATH = "webhook-5e4f3a2b1c"


def _config(url: str) -> dict[str, Any]:
    level = [{"delay": 0, "channels": ["apprise"], "groups": ["home"]}]
    return {
        "channels": {"apprise": {"enabled": True, "timeout": 5}},
        "recipients": {"groups": {"home": {"apprise": [url]}}},
        "alerts": {"escalation": {"policies": dict.fromkeys(("p1", "p2", "p3", "default"), level)}},
    }


async def test_apprise_pages_through_a_policy_and_hides_its_url(
    make_settings: Any,
    start_service: Any,
    probe: Probe,
    clock: FakeClock,
    http_server: HttpRecorder,
    caplog: Any,
) -> None:
    caplog.set_level("DEBUG")
    host_port = http_server.url.split("://", 1)[1]
    url = f"json://user:{PASSWORD}@{host_port}/{PATH}"
    port = free_port()
    settings = make_settings({**_config(url), "http": {"enabled": True, "port": port}})
    await start_service(settings, clock=clock)
    await probe.alert(source="nas", type="disk_full", severity="critical", message="Full!")
    await eventually(lambda: len(http_server.requests) == 1, what="apprise delivery")
    [request] = http_server.requests
    assert request.path == f"/{PATH}"
    assert "disk_full" in request.json["title"]
    [event] = await probe.wait_events("notified", 1)
    assert event["channel"] == "apprise"

    # A failing send: the error, the warning and the delivery log say "apprise", not the URL.
    http_server.answer(500, {"error": "down"})
    http_server.answer(500, {"error": "down"})
    http_server.answer(500, {"error": "down"})
    http_server.answer(500, {"error": "down"})
    await probe.alert(source="nas", type="fan_failed", severity="critical", message="Hot")
    await probe.wait_events("notify_failed", 1, timeout=30)
    await asyncio.sleep(0.2)
    async with store_for(settings) as store:
        attempts = await EscalationStore(store, wall_ms).attempts(event["id"])
        rows = [a for a in attempts if a["channel"] == "apprise"]
        assert rows
        assert rows[0]["recipient"].startswith("json://***#")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        metrics = await response.text()
    assert 'channel="apprise"' in metrics
    everything = "\n".join(
        [
            caplog.text,
            *(s.payload.decode("utf-8", "replace") for s in probe.seen),
            str(attempts),
            metrics,
        ]
    )
    assert PASSWORD not in everything
    assert PATH not in everything
