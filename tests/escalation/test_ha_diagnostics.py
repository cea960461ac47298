"""A notification that fails shows as Home Assistant's "Last error" (issue 13, point 5)."""

from __future__ import annotations

from tests.conftest import FakeClock
from tests.probe import Probe

LEAK = {"source": "basement", "type": "water_leak", "severity": "critical", "message": "Water!"}


async def test_failed_notification_is_the_last_error(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, _smtp, http = escalation_settings(
        {
            "homeassistant": {"discovery": True, "discovery_prefix": f"ha{probe.base}"},
            "alerts": {
                "escalation": {
                    "policies": {"p1": [{"delay": 0, "channels": ["slack"], "groups": ["oncall"]}]}
                }
            },
        }
    )
    http.answer(403, "invalid_token")  # a 4xx: not retried
    await start_service(settings, clock=clock)
    await probe.alert(**LEAK)
    failed = await probe.wait_for(
        f"{probe.base}/event", lambda s: s.json()["event"] == "notify_failed", timeout=15
    )
    report = await probe.wait_for(
        f"{probe.base}/diagnostics", lambda s: bool(s.payload) and s.json()["last_error"]
    )
    error = report.json()["last_error"]
    assert error["kind"] == "notify_failed"
    assert error["error"] == f"slack: {failed.json()['error']}"
    assert report.json()["redis"] == "connected"
