"""kill -9 of the service between two escalation levels and in the middle of a send: the
timers and leases in Redis bring every level back, on time, and none twice (except the
one request the provider may have taken before the crash: at least once)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.escalation.conftest import PEOPLE
from tests.escalation.process import (  # noqa: F401 - fixture, by name
    ServiceProcess,
    TimedRecorder,
    http_server,
    service_process,
    wait_online,
)
from tests.probe import Probe

pytestmark = pytest.mark.slow

LEAK = {"source": "basement", "type": "water_leak", "severity": "critical", "message": "Water!"}
# One recipient group per level, so that counting SMS per number counts them per level.
ONCALL, MANAGER, DIRECTOR = (PEOPLE[name][2] for name in ("oncall", "manager", "director"))


def sms_policy(delays: tuple[int, int, int], **escalation: Any) -> dict[str, Any]:
    groups = ("oncall", "manager", "director")
    return {
        "alerts": {
            "grouping": {"enabled": False},
            "escalation": {
                "policies": {
                    "p1": [
                        {"delay": d, "channels": ["sms"], "groups": [g]}
                        for d, g in zip(delays, groups, strict=True)
                    ]
                },
                **escalation,
            },
        }
    }


async def wait_sms(
    http: TimedRecorder, to: str, count: int = 1, timeout: float = 15, *, service: ServiceProcess
) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(found := http.sms(to)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{len(found)} SMS to {to} within {timeout} s, wanted {count}; "
                f"sent: {[(a.to, round(a.at % 100, 2)) for a in http.sms()]}\n"
                f"service log:\n{service.log()[-3000:]}"
            )
        await asyncio.sleep(0.01)
    return found


async def first_alert(probe: Probe) -> tuple[str, float]:
    """The id of the alert just published and when it was opened (wall clock, s)."""
    seen = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    alert_id = str(seen.json()["id"])
    state = await probe.state(alert_id, lambda s: bool(s["first_seen"]))
    return alert_id, datetime.fromisoformat(state["first_seen"]).timestamp()


async def test_kill_9_between_levels_sends_the_overdue_level_once_and_the_next_on_time(
    escalation_settings: Callable[..., Any], probe: Probe, tmp_path: Path
) -> None:
    _settings, _smtp, http = escalation_settings(sms_policy((0, 3, 8)))
    with service_process(tmp_path / "config.yaml", tmp_path / "service.log") as service:
        await wait_online(probe, 0, service)
        await probe.alert(**LEAK)
        alert_id, opened = await first_alert(probe)
        await wait_sms(http, ONCALL, service=service)
        # Level 0 is complete (its next timer is stored) once the state says active.
        await probe.state(alert_id, lambda s: s["state"] == "active" and s["next_escalation_at"])
        service.kill()

        await asyncio.sleep(opened + 3.5 - time.time())  # level 1 is now overdue
        assert http.sms(MANAGER) == [], "level 1 went out before its time"
        mark = len(probe.seen)
        service.start()
        ready = await wait_online(probe, mark, service)
        assert ready < opened + 7, f"the restart took too long to test level 2: {ready - opened}"
        [level1] = await wait_sms(http, MANAGER, service=service)
        [level2] = await wait_sms(http, DIRECTOR, service=service)
        await asyncio.sleep(0.5)  # nothing more may follow

    assert Counter(a.to for a in http.sms()) == {ONCALL: 1, MANAGER: 1, DIRECTOR: 1}
    late1 = level1.at - ready
    late2 = level2.at - (opened + 8)
    assert late1 < 1.0, f"overdue level 1 came {late1:.3f} s after the restart was ready"
    assert abs(late2) < 1.0, f"level 2 came {late2:+.3f} s off its due time"
    state = await probe.state(alert_id, lambda s: s["escalation_level"] == 2)
    assert state["state"] == "escalated"
    print(f"level 1 {late1:+.3f} s after ready; level 2 {late2:+.3f} s after due")


async def test_kill_9_during_a_send_resends_the_level_when_the_replica_is_back(
    escalation_settings: Callable[..., Any], probe: Probe, tmp_path: Path
) -> None:
    """The documented at-least-once window: the provider took the SMS, the process died
    before Redis heard. The same replica (its client id) started again hands back its
    last run's claims at once: the level is re-sent within a second of it being up, not
    after the lease."""
    lease = 30
    _settings, _smtp, http = escalation_settings(sms_policy((0, 2, 8), lease=lease))
    with service_process(tmp_path / "config.yaml", tmp_path / "service.log") as service:
        await wait_online(probe, 0, service)
        await probe.alert(**LEAK)
        alert_id, opened = await first_alert(probe)
        await wait_sms(http, ONCALL, service=service)
        await probe.state(alert_id, lambda s: s["state"] == "active" and s["next_escalation_at"])
        http.delay = 60  # hold the next request: level 1's SMS, mid-send
        [held] = await wait_sms(http, MANAGER, service=service)
        service.kill()  # the provider got the request; the service never saw the answer
        http.delay = 0
        http.release.set()

        mark = len(probe.seen)
        service.start()
        ready = await wait_online(probe, mark, service)
        _, resent = await wait_sms(http, MANAGER, 2, service=service)
        [level2] = await wait_sms(http, DIRECTOR, service=service)
        await asyncio.sleep(0.5)

    assert Counter(a.to for a in http.sms()) == {ONCALL: 1, MANAGER: 2, DIRECTOR: 1}
    assert resent.at - ready < 1.0, f"re-sent {resent.at - ready:.3f} s after the restart"
    late2 = level2.at - (opened + 8)
    assert abs(late2) < 1.0, f"level 2 came {late2:+.3f} s off its due time"
    print(
        f"level 1 re-sent {resent.at - held.at:.3f} s after the crash, "
        f"{resent.at - ready:.3f} s after the restart; level 2 {late2:+.3f} s"
    )


async def test_a_replica_that_never_comes_back_is_covered_by_the_lease(
    escalation_settings: Callable[..., Any], probe: Probe, tmp_path: Path
) -> None:
    """Killed mid-send and never started again: another replica (another client id)
    sends the batch once its lease has run out."""
    lease = 4  # seconds: delivery keys 2.67 s, one delivery's retries at most 2 s
    _settings, _smtp, http = escalation_settings(sms_policy((0, 2, 30), lease=lease))
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["mqtt"]["client_id"] += "-other"
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(config))
    with service_process(tmp_path / "config.yaml", tmp_path / "service.log") as service:
        await wait_online(probe, 0, service)
        await probe.alert(**LEAK)
        alert_id, _opened = await first_alert(probe)
        await wait_sms(http, ONCALL, service=service)
        await probe.state(alert_id, lambda s: s["state"] == "active" and s["next_escalation_at"])
        http.delay = 60
        [held] = await wait_sms(http, MANAGER, service=service)
        service.kill()
        http.delay = 0
        http.release.set()
        mark = len(probe.seen)
        with service_process(tmp_path / "other.yaml", tmp_path / "other.log") as other:
            await wait_online(probe, mark, other)
            _, resent = await wait_sms(http, MANAGER, 2, service=other)
            await asyncio.sleep(0.5)

    assert Counter(a.to for a in http.sms()) == {ONCALL: 1, MANAGER: 2}
    gap = resent.at - held.at
    assert lease - 0.5 < gap < lease + 1.5, f"re-sent {gap:.3f} s after the crashed send"
    print(f"level 1 re-sent by another replica {gap:.3f} s after the crash")
