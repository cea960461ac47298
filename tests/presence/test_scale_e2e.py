"""2,000 devices: a broker restart replays every retained availability message, and
only the devices that are really offline raise anything."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiomqtt

from tests.conftest import FakeClock
from tests.presence.conftest import FIRMWARES, created
from tests.probe import Probe
from tests.servers import MosquittoServer
from tests.waits import eventually

Z2M = FIRMWARES[0]
DEVICES = 2000
OFFLINE = ("dev-0007", "dev-1234")


async def test_reconnect_replaying_2000_retained_messages_raises_only_offline_devices(
    tmp_path: Path, make_settings: Any, start_service: Any, clock: FakeClock, unique: str
) -> None:
    broker = MosquittoServer(tmp_path / "mosquitto").start()
    try:
        prefix = f"p{unique}"
        async with aiomqtt.Client("127.0.0.1", broker.port, max_inflight_messages=1000) as c:
            for i in range(DEVICES):
                name = f"dev-{i:04d}"
                payload = Z2M.offline if name in OFFLINE else Z2M.online
                await c.publish(Z2M.topic_of(prefix, name), payload, qos=1, retain=True)
        settings = make_settings(
            {"presence": {"availability": [Z2M.config(prefix, **{"for": 60})]}},
            mqtt_url=broker.url,
        )
        running = await start_service(settings, clock=clock)
        service = running.service
        async with Probe(broker.port, settings.mqtt.base_topic) as probe:
            await probe.wait_for(
                f"{probe.base}/presence", lambda s: len(s.json()) == DEVICES, timeout=60
            )
            broker.stop()
            await eventually(lambda: not service.mqtt_connected, what="service offline")
            broker.start()
            await eventually(lambda: service.mqtt_connected, timeout=20, what="reconnected")
        async with Probe(broker.port, settings.mqtt.base_topic) as probe:
            await asyncio.sleep(1.0)  # the replay reaches the service's queue
            await eventually(service.queue.empty, timeout=30, what="replay done")
            clock.advance(3600)
            for name in OFFLINE:
                await eventually(
                    lambda n=name: bool(created(probe, "device_offline", n)),  # type: ignore[misc]
                    what=f"{name} raised",
                )
            await asyncio.sleep(1.0)  # a second deadline pass: nothing more
            raised = {e["source"] for e in probe.events("created")}
            assert raised == set(OFFLINE)
            body = probe.last(f"{probe.base}/presence")
            assert body is not None
            states = [v["state"] for v in body.json().values()]
            assert states.count("offline") == len(OFFLINE)
            assert states.count("ok") == DEVICES - len(OFFLINE)
    finally:
        broker.stop()
