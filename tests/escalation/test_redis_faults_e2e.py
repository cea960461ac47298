"""Paging through Redis faults: a restart (with the pool's connections fresh, or idle past
the health check interval) costs no page and almost no time, a send settled while Redis
restarts is not sent again, and an outage reads as a handful of log lines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homealert_mqtt.config import Settings
from tests.escalation.conftest import PEOPLE, SID
from tests.escalation.process import (  # noqa: F401 - fixture, by name
    ServiceProcess,
    TimedRecorder,
    http_server,
    service_process,
    wait_online,
)
from tests.escalation.sends import publish_alerts
from tests.notify.conftest import serving
from tests.probe import Probe
from tests.servers import MosquittoServer, RedisServer
from tests.waits import eventually

pytestmark = pytest.mark.slow

ONCALL = PEOPLE["oncall"][2]
BURST = 20


def sms_config(redis: RedisServer, **escalation: Any) -> dict[str, Any]:
    return {
        "redis": {"url": redis.url, "health_check_interval": 1},
        "alerts": {
            "grouping": {"enabled": False},
            "escalation": {
                "policies": {"p1": [{"delay": 0, "channels": ["sms"], "groups": ["oncall"]}]},
                **escalation,
            },
        },
    }


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()  # AOF, appendfsync always
    yield server
    server.stop()


async def wait_count(http: TimedRecorder, count: int, timeout: float = 15) -> None:
    await eventually(lambda: len(http.sms(ONCALL)) >= count, timeout, what=f"{count} SMS")


@pytest.mark.parametrize("idle", [0.0, 2.5], ids=["right-after", "idle-past-health-check"])
async def test_pages_go_out_within_2_s_of_a_burst_after_a_redis_restart(
    escalation_settings: Callable[..., Any],
    start_service: Callable[..., Any],
    probe: Probe,
    redis: RedisServer,
    idle: float,
) -> None:
    settings, _smtp, http = escalation_settings(sms_config(redis))
    await start_service(settings)
    await publish_alerts(probe.port, probe.base, "warm", 5)  # the pool has connections
    await wait_count(http, 5)

    redis.kill()
    await asyncio.sleep(0.5)
    redis.start()  # same port, same AOF
    await asyncio.sleep(idle)  # the pooled connections, dead, idle past the check
    sent = await publish_alerts(probe.port, probe.base, "after", BURST)
    await wait_count(http, 5 + BURST)
    arrivals = sorted(a.at - sent for a in http.sms(ONCALL)[5:])
    assert arrivals[-1] < 2.0, f"the last page came {arrivals[-1]:.2f} s after the burst"
    await asyncio.sleep(0.5)
    assert len(http.sms(ONCALL)) == 5 + BURST  # and none twice
    print(f"after the restart: first page {arrivals[0]:.3f} s, last {arrivals[-1]:.3f} s")


class KillingRecorder(TimedRecorder):
    """Kills Redis when the first SMS arrives, then answers it: the provider took the
    message, and the service's settle finds Redis gone."""

    def __init__(self, redis: RedisServer) -> None:
        super().__init__()
        self.redis = redis
        self.killed_at: float | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.killed_at is None and request.path.endswith("/Messages.json"):
            self.redis.kill()
            self.killed_at = time.time()
        return await super().handle(request)


@pytest.fixture
async def killing_http(redis: RedisServer) -> AsyncIterator[KillingRecorder]:
    recorder = KillingRecorder(redis)
    async with serving(recorder):
        yield recorder


async def test_a_send_settled_while_redis_restarts_is_not_sent_again(
    make_settings: Callable[..., Settings],
    start_service: Callable[..., Any],
    probe: Probe,
    redis: RedisServer,
    killing_http: KillingRecorder,
) -> None:
    lease = 4  # its delivery keys 2.67 s: the outage below stays inside them
    config = sms_config(redis, lease=lease)
    config["channels"] = {
        "sms": {
            "enabled": True,
            "account_sid": SID,
            "auth_token": "t0ken-secret",
            "from_number": "+15550000000",
            "api_base_url": killing_http.url,
            "timeout": 5,
        }
    }
    config["recipients"] = {"groups": {g: {"sms": [p[2]]} for g, p in PEOPLE.items()}}
    running = await start_service(make_settings(config))
    await probe.alert(source="basement", type="water_leak", severity="critical")
    [created] = await probe.wait_events("created", 1)
    await wait_count(killing_http, 1)
    await asyncio.sleep(1.0)  # Redis stays away; the settle keeps trying
    redis.start()
    store = running.service.escalation.store
    await eventually(lambda: store.attempts(created["id"]), what="the settle going through")
    await asyncio.sleep(lease + 1.5)  # the batch's lease is long over
    assert len(killing_http.sms(ONCALL)) == 1
    [attempt] = await store.attempts(created["id"])
    assert attempt["outcome"] == "sent"


@pytest.mark.parametrize("outage", [5, 30])
async def test_a_redis_outage_is_a_handful_of_log_lines(
    escalation_settings: Callable[..., Any],
    probe: Probe,
    redis: RedisServer,
    tmp_path: Path,
    outage: int,
) -> None:
    escalation_settings(sms_config(redis))  # writes config.yaml
    with service_process(tmp_path / "config.yaml", tmp_path / "service.log") as service:
        await wait_online(probe, 0, service)
        before = len(service.log().splitlines())
        redis.kill()
        # Alerts keep coming while Redis is away: the pipeline holds them, the engine
        # and the summary keep trying.
        for n in range(outage):
            await probe.alert(source="outage", type=f"t{n}", severity="critical")
            await asyncio.sleep(1)
        redis.start()
        await probe.wait_events("created", outage, timeout=20)
        await asyncio.sleep(2)
        lines = service.log().splitlines()[before:]
    assert len(lines) < 50, "\n".join(lines)
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    assert any("Redis is back" in line for line in lines), "\n".join(lines)
    print(f"{outage} s outage: {len(lines)} log lines")


async def test_a_broker_outage_is_a_handful_of_log_lines(
    make_settings: Callable[..., Settings], tmp_path: Path, unique: str
) -> None:
    broker = MosquittoServer(tmp_path / "mosquitto").start()
    try:
        make_settings(mqtt_url=broker.url)  # writes config.yaml
        with service_process(tmp_path / "config.yaml", tmp_path / "service.log") as service:
            async with Probe(broker.port, f"t{unique}") as probe:
                await wait_online(probe, 0, service)
            before = len(service.log().splitlines())
            broker.stop()
            await asyncio.sleep(10)
            broker.start()
            async with Probe(broker.port, f"t{unique}") as probe:
                await probe.wait_for(
                    f"t{unique}/status", lambda s: s.payload == b"online", timeout=40
                )
                await probe.alert(source="after", type="outage", severity="critical")
                await probe.wait_events("created", 1)
            lines = service.log().splitlines()[before:]
    finally:
        broker.stop()
    assert len(lines) < 20, "\n".join(lines)
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    assert [line for line in lines if "MQTT broker unavailable" in line], "\n".join(lines)
    assert [line for line in lines if "MQTT broker is back" in line], "\n".join(lines)
    print(f"10 s broker outage: {len(lines)} log lines")
