"""Metrics and /healthz of the running service, over real HTTP (real Mosquitto, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from homealert_mqtt.app import build_service
from homealert_mqtt.config import Settings
from homealert_mqtt.embedded import free_port
from homealert_mqtt.metrics import Metrics
from homealert_mqtt.observability import NO_METRICS, MetricsListener, reason_class
from tests.probe import Probe

pytestmark = pytest.mark.timeout(40)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def until(check: Callable[[], Any], timeout: float = 10) -> Any:
    """Poll an async check until it returns something true; that value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.fixture
def http_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings({"http": {"enabled": True, "host": "127.0.0.1", "port": free_port()}})


async def test_healthz_and_metrics_of_the_running_service(
    start_service: Callable[..., Any], http_settings: Settings, probe: Probe
) -> None:
    running = await start_service(http_settings)
    url = f"http://127.0.0.1:{http_settings.http.port}"

    async def healthy() -> bool:
        return (await get(f"{url}/healthz"))[0] == 200

    await until(healthy)
    status, body = await get(f"{url}/healthz")
    assert status == 200
    assert '"mqtt": "connected"' in body or '"mqtt":"connected"' in body

    leak = {"source": "cellar", "type": "leak", "severity": "critical"}
    await probe.alert(**leak)
    await probe.alert(**leak)  # deduplicated
    await probe.alert(source="attic", type="smoke", severity="high")
    await probe.publish(f"{probe.base}/in", b"{not json")  # malformed
    await probe.publish(f"{probe.base}/in", b"x" * 70_000)  # too large
    await probe.publish(f"{probe.base}/alert/nope/ack", b"")  # a command for no alert
    await probe.wait_events("rejected", 3)
    await probe.wait_events("deduplicated", 1)

    async def scraped() -> dict[Any, float] | None:
        status, text = await get(f"{url}/metrics")
        assert status == 200
        found = samples(text)
        done = found[("homealert_alerts_received_total", ())] == 5
        return found if done else None

    found = await until(scraped)
    assert found[("homealert_alerts_deduplicated_total", ())] == 1
    for reason, count in (("malformed", 1), ("too_large", 1), ("command", 1)):
        assert found[("homealert_alerts_rejected_total", (("reason", reason),))] == count
    assert found[("homealert_open_alerts", (("priority", "P1"),))] == 1
    assert found[("homealert_open_alerts", (("priority", "P2"),))] == 1
    assert found[("homealert_open_alerts", (("priority", "P3"),))] == 0
    assert found[("homealert_pipeline_latency_seconds_count", ())] == 3
    assert found[("homealert_notifications_sent_total", (("channel", "sms"),))] == 0

    # The open-alerts gauge follows Redis at each scrape: an ack changes nothing, a
    # resolve closes the alert.
    await probe.alert(**leak, status="resolved")
    await probe.wait_events("resolved", 1)

    async def p1_closed() -> bool:
        text = (await get(f"{url}/metrics"))[1]
        return samples(text)[("homealert_open_alerts", (("priority", "P1"),))] == 0

    await until(p1_closed)
    await running.stop()


async def test_healthz_is_503_without_mqtt(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(
        {"http": {"enabled": True, "port": port}},
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",  # nothing listens there
    )
    service = build_service(settings)
    task = asyncio.create_task(service.run())
    try:

        async def answered() -> tuple[int, str] | None:
            with contextlib.suppress(aiohttp.ClientConnectionError):
                return await get(f"http://127.0.0.1:{port}/healthz")
            return None

        status, body = await until(answered)
        assert status == 503
        assert "mqtt: not connected" in body
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10)


async def test_metrics_listener_counts() -> None:
    class NoStore:
        async def summary(self) -> Any:
            raise OSError("Redis is down")

    metrics = Metrics()
    listener = MetricsListener(metrics, NoStore())  # type: ignore[arg-type]
    listener.batch_done(4, 0.002)
    await listener.rejected("payload is not JSON: Expecting value")
    await listener.rejected("no alert 'x'")  # a command: not an alert message
    listener.notification_sent("sms")
    listener.notification_failed("phone")
    await listener.refresh()  # Redis down: the scrape still answers
    found = samples(metrics.exposition()[0].decode())
    assert found[("homealert_alerts_received_total", ())] == 5
    assert found[("homealert_pipeline_latency_seconds_count", ())] == 4
    assert found[("homealert_notifications_sent_total", (("channel", "sms"),))] == 1
    assert found[("homealert_notifications_failed_total", (("channel", "phone"),))] == 1
    NO_METRICS.notification_sent("sms")  # metrics off: a no-op the engine may call


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        ("payload is 70000 bytes, over the limit of 65536", "too_large"),
        ("payload is not valid UTF-8 (byte 3)", "malformed"),
        ("payload is not JSON: Expecting value: line 1 column 2 (char 1)", "malformed"),
        ("payload must be a JSON object, got array", "malformed"),
        ("payload is nested too deeply", "malformed"),
        ("retained alerts are not accepted (publish without retain)", "retained"),
        ("status resolved, but no open alert has this fingerprint", "no_open_alert"),
        ("source is required", "invalid"),
        ("priority must be P1..P5, got 'P9'", "invalid"),
        ("message must be a string, got number", "invalid"),
        ("attributes are 9000 bytes as JSON, over the limit of 8 KiB", "invalid"),
        ("command payload is not JSON: x", "command"),
        ("by must be a string", "command"),
        ("no alert 'abc'", "command"),
        ("no group 'g1'", "command"),
        ("alert 'abc' is already resolved; ack changes nothing", "command"),
    ],
)
def test_reason_classes(reason: str, name: str) -> None:
    assert reason_class(reason) == name
