"""kill -9 in the middle of a burst: every alert the broker accepted is stored once, with
exact repeat counts, and its retained topic holds its state.

The service runs as a real process (`python -m homealert_mqtt run`). Messages it had
received but not acknowledged are redelivered by the broker with DUP set; ingest.lua
recognises those it had already committed (same packet id, same payload digest).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import redis

from tests.probe import Probe
from tests.service.burst import QUIET, assert_exact, sentinel
from tests.waits import ServiceProcess, store_for

pytestmark = pytest.mark.slow

DISTINCT = 2000
KILL_AFTER = DISTINCT // 4
REPEATS = 100  # for each of three fingerprints


def kill9_burst() -> list[dict[str, Any]]:
    """2,000 distinct alerts and 3 x 100 repeats, interleaved: one repeated with the very
    same payload (same digest), one with a changing message, one by dedup_key."""
    distinct = [{"source": "k", "type": f"d{i}"} for i in range(DISTINCT)]
    same = [{"source": "k", "type": "same", "message": "identical"}] * REPEATS
    changing = [{"source": "k", "type": "changing", "message": f"#{i}"} for i in range(REPEATS)]
    keyed = [
        {"source": "k", "type": "keyed", "dedup_key": "door-1", "severity": s}
        for s in ["low", "high"] * (REPEATS // 2)
    ]
    repeats = [x for triple in zip(same, changing, keyed, strict=True) for x in triple]
    # a repeat after every ~7 distinct alerts
    out: list[dict[str, Any]] = []
    step = DISTINCT // len(repeats) + 1
    for i, alert in enumerate(distinct):
        out.append(alert)
        if i % step == 0 and repeats:
            out.append(repeats.pop())
    return out + repeats


def kill_once_stored(redis_url: str, retention: str, service: ServiceProcess) -> None:
    """SIGKILL the service as soon as the first KILL_AFTER alerts are stored."""
    with redis.Redis.from_url(redis_url) as client:
        deadline = time.monotonic() + 60
        while int(client.zcard(retention)) < KILL_AFTER:
            assert time.monotonic() < deadline, "the service stored nothing"
            time.sleep(0.002)
    service.signal(signal.SIGKILL)
    service.wait()


async def test_kill_9_mid_burst(tmp_path: Path, make_settings, probe: Probe) -> None:
    settings = make_settings()
    base = settings.mqtt.base_topic
    args = ["run", "--config", str(tmp_path / "config.yaml")]
    status = f"{base}/status"
    service = ServiceProcess(args, tmp_path / "service.log").start()
    try:
        await probe.wait_for(status, lambda s: s.payload == b"online", timeout=30)
        alerts = kill9_burst()
        accepted: list[dict[str, Any]] = []
        async with aiomqtt.Client(
            "127.0.0.1", settings.mqtt.port, max_inflight_messages=1000, logger=QUIET
        ) as client:

            async def send(alert: dict[str, Any]) -> None:
                await client.publish(f"{base}/in", json.dumps(alert), qos=1, timeout=60)
                accepted.append(alert)  # the broker sent PUBACK

            sending = asyncio.gather(*(send(a) for a in alerts), return_exceptions=True)
            async with store_for(settings) as store:
                # From a thread: this loop is busy publishing, and polling on it let the
                # service store most of the burst before the kill landed.
                retention = store.keys.retention
                await asyncio.to_thread(kill_once_stored, settings.redis.url, retention, service)
                at_kill = int(await store.redis.zcard(retention))
            await sending
        mark = len(probe.seen)
        await probe.wait_for(status, lambda s: s.payload == b"offline")  # the last will
        assert len(accepted) == len(alerts)
        assert at_kill < DISTINCT + 3, "killed too late to prove anything"

        service = ServiceProcess(args, tmp_path / "service2.log").start()
        await probe.wait_for(status, lambda s: s.payload == b"online", after=mark, timeout=30)
        await sentinel(probe)
        await assert_exact(settings, "k", Counter(a["type"] for a in accepted))
    finally:
        service.stop()
