"""Restarts lose nothing and count nothing twice: the service's own restart, Redis
going away under it, and the broker going away under it."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import aiomqtt
import pytest

from tests.probe import Probe
from tests.servers import MosquittoServer, RedisServer
from tests.service.burst import QUIET, assert_exact, burst, publish_all, sentinel
from tests.waits import eventually, retained, store_for

pytestmark = pytest.mark.slow


async def test_alerts_sent_while_the_service_is_down_are_processed_once(
    make_settings, start_service, probe: Probe
) -> None:
    settings = make_settings()
    running = await start_service(settings)
    await sentinel(probe)  # the persistent session exists
    mark = len(probe.seen)
    await running.stop()
    # The service said it before stopping; the probe hears it a moment later.
    await probe.wait_for(f"{probe.base}/status", lambda s: s.payload == b"offline", after=mark)

    alerts = burst("down", 50, {"repeat": 20})
    for alert in alerts:
        await probe.alert(**alert)
    mark = len(probe.seen)
    await start_service(settings)  # same client id: the broker kept the session
    await probe.wait_for(f"{probe.base}/status", lambda s: s.payload == b"online", after=mark)
    await sentinel(probe)

    await assert_exact(settings, "down", Counter(a["type"] for a in alerts))
    created = [e for e in probe.events("created") if e["source"] == "down"]
    assert len(created) == 51
    assert len([e for e in probe.events("deduplicated") if e["source"] == "down"]) == 19


async def test_redis_killed_and_restarted_under_load(
    tmp_path: Path, make_settings, start_service, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homealert_mqtt")
    redis = RedisServer(tmp_path / "redis").start()  # appendonly, appendfsync always
    try:
        settings = make_settings(redis_url=redis.url)
        running = await start_service(settings)
        first = burst("r", 300, {"rep_a": 60, "rep_b": 40})
        second = burst("r", 0, {"rep_a": 20}) + [{"source": "r", "type": f"e{i}"} for i in range(9)]
        async with aiomqtt.Client(
            "127.0.0.1", settings.mqtt.port, max_inflight_messages=500, logger=QUIET
        ) as client:
            sending = asyncio.create_task(publish_all(client, f"{probe.base}/in", first))
            async with store_for(settings) as store:

                async def some_stored() -> bool:
                    return int(await store.redis.zcard(store.keys.retention)) >= 60

                await eventually(some_stored, timeout=15, what="60 alerts stored")
            redis.kill()  # mid-burst: replies to committed scripts may be lost
            await sending
            await publish_all(client, f"{probe.base}/in", second)
            await eventually(
                lambda: running.service.holding > 0,
                what="the pipeline noticing Redis is gone",
            )
            redis.start()  # same port, same dir: the AOF brings the commits back
            await sentinel(probe)
        expected = Counter(a["type"] for a in first + second)
        # Every field, the escalation engine's new -> active move included: a commit whose
        # reply died with Redis is published by the resync once Redis is back.
        await assert_exact(settings, "r", expected)
        # An outage is expected on a house's night: told in a few lines, no traceback.
        assert not [r.getMessage() for r in caplog.records if r.exc_info], "a traceback"
        told = [r.getMessage() for r in caplog.records if "Redis" in r.getMessage()]
        assert [m for m in told if "unavailable" in m][1:] == [], told  # one warning
        assert len([m for m in told if "Redis is back after" in m]) == 1, told
    finally:
        redis.stop()


async def test_broker_restart_while_alerts_are_published(
    tmp_path: Path, make_settings, start_service
) -> None:
    broker = MosquittoServer(tmp_path / "mosquitto").start()  # persistence on
    try:
        settings = make_settings(mqtt_url=broker.url)
        running = await start_service(settings)
        service = running.service
        base = settings.mqtt.base_topic
        first = burst("b", 200, {"rep": 50})
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, max_inflight_messages=500, logger=QUIET
        ) as client:
            await publish_all(client, f"{base}/in", first)
        # Stop while the service still works through the burst: queued and in-flight
        # messages are in the broker's persistence file.
        broker.stop()
        await eventually(lambda: not service.mqtt_connected, what="service offline")
        broker.start()
        await eventually(lambda: service.mqtt_connected, timeout=20, what="reconnected")
        second = burst("b", 20, {"rep": 10})
        async with Probe(broker.port, base) as probe:
            await probe.wait_for(f"{base}/status", lambda s: s.payload == b"online")
            await publish_all(probe._client, f"{base}/in", second)  # type: ignore[arg-type]
            await sentinel(probe)
        expected = Counter(a["type"] for a in first + second)
        await assert_exact(settings, "b", expected)
        status = await retained(settings, f"{base}/status", 1)
        assert status == {f"{base}/status": b"online"}
    finally:
        broker.stop()
