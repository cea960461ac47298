"""kill -9 around a silence's end: the end is a timer in Redis, claimed in the same Lua
step that restarts the alert's escalation, so after a restart the page goes out once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.escalation.process import (  # noqa: F401 - fixture, by name
    TimedRecorder,
    http_server,
    service_process,
    wait_online,
)
from tests.escalation.test_crash_e2e import first_alert, wait_sms
from tests.noise.conftest import LEAK, ONCALL, sms_policy
from tests.probe import Probe

pytestmark = pytest.mark.slow


async def test_kill_9_before_a_silence_ends_pages_once_after_the_restart(
    escalation_settings: Callable[..., Any], probe: Probe, tmp_path: Path
) -> None:
    _settings, _smtp, http = escalation_settings(sms_policy())
    with service_process(tmp_path / "config.yaml", tmp_path / "service.log") as service:
        await wait_online(probe, 0, service)
        await probe.publish(
            f"{probe.base}/silence/work/set", {"matchers": {"source": "basement"}, "duration": 3}
        )
        silence = await probe.wait_for(f"{probe.base}/silence/work", lambda s: bool(s.payload))
        await probe.alert(**LEAK)
        alert_id, _opened = await first_alert(probe)
        await probe.state(alert_id, lambda s: s["silenced_by"] == ["work"])
        service.kill()
        assert http.sms() == []

        ends = silence.json()["ends_at"]
        await _sleep_past(ends, 0.5)  # the silence ended while nobody ran
        mark = len(probe.seen)
        service.start()
        await wait_online(probe, mark, service)
        await wait_sms(http, ONCALL, service=service)
        await probe.wait_for(f"{probe.base}/silence/work", lambda s: s.payload == b"", after=mark)
        await asyncio.sleep(1.0)  # nothing more may follow
    assert Counter(a.to for a in http.sms()) == {ONCALL: 1}


async def test_kill_9_between_a_silence_ending_and_the_page_pages_once(
    escalation_settings: Callable[..., Any], probe: Probe, tmp_path: Path
) -> None:
    lease = 3  # a batch claimed when the service died comes back after this
    _settings, _smtp, http = escalation_settings(sms_policy(lease=lease))
    http.delay = 60  # hold the page mid-send, if it gets that far before the kill
    with service_process(tmp_path / "config.yaml", tmp_path / "service.log") as service:
        await wait_online(probe, 0, service)
        await probe.publish(
            f"{probe.base}/silence/work/set", {"matchers": {"source": "basement"}, "duration": 2}
        )
        await probe.wait_for(f"{probe.base}/silence/work", lambda s: bool(s.payload))
        await probe.alert(**LEAK)
        alert_id, _opened = await first_alert(probe)
        await probe.state(alert_id, lambda s: s["silenced_by"] == ["work"])
        # The end is claimed (and the escalation restarted) in one step: kill the
        # service the moment it says so, before or while it pages.
        await probe.wait_events("unsilenced", 1)
        service.kill()
        http.delay = 0
        http.release.set()
        before = len(http.sms())

        mark = len(probe.seen)
        service.start()
        await wait_online(probe, mark, service)
        await wait_sms(http, ONCALL, service=service, timeout=lease + 10)
        await asyncio.sleep(lease + 1.0)  # a lease's worth: nothing more may follow
    sent = Counter(a.to for a in http.sms())
    # Once; twice only when the provider took the request before the kill (at least
    # once, as every channel is: it had no answer).
    assert sent[ONCALL] == 1 + before, (before, sent)


async def _sleep_past(iso_time: str, margin: float) -> None:
    from datetime import datetime  # noqa: PLC0415

    await asyncio.sleep(
        max(0.0, datetime.fromisoformat(iso_time).timestamp() + margin - time.time())
    )
