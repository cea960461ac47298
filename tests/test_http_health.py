"""The health and metrics endpoints, over real HTTP on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from homealert_mqtt.http_health import HealthCheck, HealthReport, HealthServer, HttpConfig
from homealert_mqtt.metrics import Metrics

pytestmark = pytest.mark.timeout(10)


class Flags:
    """What the service would know about its connections."""

    def __init__(self) -> None:
        self.mqtt = True
        self.redis = True

    def report(self) -> HealthReport:
        return HealthReport(self.mqtt, self.redis, {"version": "1.0.0"})


@pytest.fixture
def flags() -> Flags:
    return Flags()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def base_url(flags: Flags, metrics: Metrics) -> AsyncIterator[str]:
    server = HealthServer(metrics, flags.report, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def _get(url: str, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_healthy(base_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "status": "ok",
            "mqtt": "connected",
            "redis": "connected",
            "version": "1.0.0",
        }


@pytest.mark.parametrize(
    ("mqtt", "redis", "problems"),
    [
        (False, True, ["mqtt: not connected"]),
        (True, False, ["redis: not connected"]),
        (False, False, ["mqtt: not connected", "redis: not connected"]),
    ],
)
async def test_unhealthy(
    base_url: str, flags: Flags, mqtt: bool, redis: bool, problems: list[str]
) -> None:
    flags.mqtt, flags.redis = mqtt, redis
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/healthz") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["status"] == "unavailable"
    assert body["problems"] == problems


async def test_metrics_endpoint(base_url: str, metrics: Metrics) -> None:
    metrics.alert_received()
    metrics.set_open_alerts({"P1": 3})
    status, content_type, text = await _get(f"{base_url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert "homealert_alerts_received_total 1.0" in text
    assert 'homealert_open_alerts{priority="P1"} 3.0' in text


async def test_metrics_openmetrics(base_url: str) -> None:
    status, content_type, text = await _get(
        f"{base_url}/metrics", Accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


async def test_unknown_path_is_404(base_url: str) -> None:
    status, _, _ = await _get(f"{base_url}/nope")
    assert status == 404


@pytest.mark.parametrize("kind", ["async", "raises"])
async def test_health_callable_variants(metrics: Metrics, kind: str) -> None:
    async def async_check() -> HealthReport:
        return HealthReport(True, False)

    def broken() -> HealthReport:
        raise RuntimeError("boom")

    check: HealthCheck = async_check if kind == "async" else broken
    server = HealthServer(metrics, check, port=0)
    await server.start()
    try:
        status, _, text = await _get(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        await server.stop()
    assert status == 503
    assert ("redis: not connected" if kind == "async" else "boom") in text


async def test_port_in_use_is_an_error(metrics: Metrics, flags: Flags) -> None:
    first = HealthServer(metrics, flags.report, port=0)
    await first.start()
    try:
        second = HealthServer(metrics, flags.report, port=first.port)
        with pytest.raises(OSError):
            await second.start()
        await second.stop()
    finally:
        await first.stop()


def test_config_defaults() -> None:
    assert HttpConfig.from_config(None) == HttpConfig(False, "127.0.0.1", 9466)
    assert HttpConfig.from_config({"enabled": True, "port": 8080}) == HttpConfig(
        True, "127.0.0.1", 8080
    )
