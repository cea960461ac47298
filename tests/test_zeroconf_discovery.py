"""Broker discovery and service announcement over real mDNS, on loopback only.

Every zeroconf instance here binds to 127.0.0.1, so no packet leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from homealert_mqtt.zeroconf_discovery import (
    HOMEALERT_SERVICE_TYPE,
    MQTT_SERVICE_TYPE,
    BrokerAddress,
    ServiceAnnouncer,
    find_mqtt_broker,
    instance_name,
)

pytestmark = pytest.mark.timeout(5)

LOOPBACK = ["127.0.0.1"]


def _unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:6]}"


@asynccontextmanager
async def fake_brokers(*brokers: tuple[str, int]) -> AsyncIterator[None]:
    """Advertise `_mqtt._tcp` services pointing at 127.0.0.1, as a broker's host would."""
    azc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    infos = [
        AsyncServiceInfo(
            MQTT_SERVICE_TYPE,
            f"{name}.{MQTT_SERVICE_TYPE}",
            port=port,
            addresses=[socket.inet_aton("127.0.0.1")],
            server=f"broker-{port}.local.",
        )
        for name, port in brokers
    ]
    try:
        for info in infos:
            await azc.async_register_service(info, cooperating_responders=True)
        yield
    finally:
        await azc.async_unregister_all_services()
        await azc.async_close()


async def _find_while_registering(
    brokers: list[tuple[str, int]], preferred: str | None, window: float = 3.0
) -> BrokerAddress | None:
    # Browse first, then register: the browser hears the announcement at once
    # instead of waiting for its second query (responders may not repeat a record
    # within a second, RFC 6762 section 6).
    search = asyncio.create_task(find_mqtt_broker(preferred, timeout=window, interfaces=LOOPBACK))
    await asyncio.sleep(0)
    async with fake_brokers(*brokers):
        return await search


async def test_finds_a_broker() -> None:
    name = _unique("Mosquitto")
    started = time.monotonic()
    found = await _find_while_registering([(name, 1883)], None)
    assert found == BrokerAddress(name, "127.0.0.1", 1883)
    assert time.monotonic() - started < 3.0


async def test_finds_a_broker_registered_before_the_search() -> None:
    name = _unique("Early")
    async with fake_brokers((name, 1884)):
        found = await find_mqtt_broker(None, timeout=3.0, interfaces=LOOPBACK)
    assert found == BrokerAddress(name, "127.0.0.1", 1884)


async def test_preferred_name_wins() -> None:
    other, wanted = _unique("Other"), _unique("Wanted")
    found = await _find_while_registering([(other, 1883), (wanted, 1885)], wanted.upper())
    assert found == BrokerAddress(wanted, "127.0.0.1", 1885)


async def test_falls_back_to_the_first_when_preferred_is_absent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="homealert_mqtt.zeroconf_discovery")
    only = _unique("Only")
    found = await _find_while_registering([(only, 1886)], "Not There", window=1.0)
    assert found == BrokerAddress(only, "127.0.0.1", 1886)
    assert "'Not There' not found" in caplog.text
    assert f"found MQTT broker '{only}' at 127.0.0.1:1886" in caplog.text


async def test_none_within_the_timeout() -> None:
    started = time.monotonic()
    assert await find_mqtt_broker(None, timeout=0.5, interfaces=LOOPBACK) is None
    assert time.monotonic() - started < 1.5


async def test_no_multicast_means_no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(**_kwargs: object) -> AsyncZeroconf:
        raise OSError("No such device")

    monkeypatch.setattr("homealert_mqtt.zeroconf_discovery.AsyncZeroconf", no_network)
    assert await find_mqtt_broker("any", timeout=0.5) is None


def test_instance_name() -> None:
    assert instance_name(f"My broker.{MQTT_SERVICE_TYPE}", MQTT_SERVICE_TYPE) == "My broker"
    assert instance_name("odd", MQTT_SERVICE_TYPE) == "odd"


async def test_announcer_is_found_with_its_txt() -> None:
    name = _unique("HomeAlert test")
    announcer = ServiceAnnouncer(
        version="1.2.3", base_topic="house/alerts", port=9466, name=name, interfaces=LOOPBACK
    )
    azc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    added: asyncio.Queue[str] = asyncio.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Added:
            added.put_nowait(name)

    browser = AsyncServiceBrowser(azc.zeroconf, HOMEALERT_SERVICE_TYPE, handlers=[on_change])
    try:
        await announcer.start()
        full_name = f"{name}.{HOMEALERT_SERVICE_TYPE}"
        async with asyncio.timeout(3):
            while await added.get() != full_name:
                pass
        info = AsyncServiceInfo(HOMEALERT_SERVICE_TYPE, full_name)
        assert await info.async_request(azc.zeroconf, 2000)
        assert info.port == 9466
        assert info.parsed_addresses() == ["127.0.0.1"]
        assert info.decoded_properties == {"version": "1.2.3", "base_topic": "house/alerts"}
    finally:
        await browser.async_cancel()
        await announcer.stop()
        await azc.async_close()
    await announcer.stop()  # idempotent
