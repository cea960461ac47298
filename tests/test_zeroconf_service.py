"""The running service with `mqtt.url: auto`: finds the broker by mDNS, announces itself.

Every zeroconf instance here speaks on 127.0.0.1 only: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from homealert_mqtt.config import Settings
from homealert_mqtt.mqtt.link import BrokerAddress
from homealert_mqtt.zeroconf_discovery import (
    HOMEALERT_SERVICE_TYPE,
    MQTT_SERVICE_TYPE,
    ZeroconfResolver,
)
from tests.probe import Probe
from tests.servers import MosquittoServer

pytestmark = pytest.mark.timeout(30)

LOOPBACK = ["127.0.0.1"]


@asynccontextmanager
async def advertised_broker(name: str, port: int) -> AsyncIterator[None]:
    """A `_mqtt._tcp` service pointing at 127.0.0.1:`port`, as a broker's host would."""
    azc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    info = AsyncServiceInfo(
        MQTT_SERVICE_TYPE,
        f"{name}.{MQTT_SERVICE_TYPE}",
        port=port,
        addresses=[socket.inet_aton("127.0.0.1")],
        server=f"broker-{port}.local.",
    )
    try:
        await azc.async_register_service(info, cooperating_responders=True)
        yield
    finally:
        await azc.async_unregister_all_services()
        await azc.async_close()


async def browse_homealert(base_topic: str, timeout: float = 5) -> dict[str, str]:
    """The TXT record of the `_homealert._tcp` instance announcing `base_topic`."""
    azc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    names: asyncio.Queue[str] = asyncio.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.put_nowait(name)

    browser = AsyncServiceBrowser(azc.zeroconf, HOMEALERT_SERVICE_TYPE, handlers=[on_change])
    try:
        async with asyncio.timeout(timeout):
            while True:
                name = await names.get()
                info = AsyncServiceInfo(HOMEALERT_SERVICE_TYPE, name)
                if not await info.async_request(azc.zeroconf, 1000):
                    continue
                txt = {k.decode(): (v or b"").decode() for k, v in (info.properties or {}).items()}
                if txt.get("base_topic") == base_topic:
                    return txt
    finally:
        await browser.async_cancel()
        await azc.async_close()


async def test_service_finds_the_broker_and_announces_itself(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    mqtt_broker: MosquittoServer,
    probe: Probe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="homealert_mqtt.zeroconf_discovery")
    name = f"Test broker {uuid.uuid4().hex[:6]}"
    settings = make_settings(
        {"mqtt": {"broker_name": name}, "zeroconf": {"interfaces": LOOPBACK}},
        mqtt_url="auto",
    )
    assert settings.zeroconf.announce  # `auto` announces when the broker is found by mDNS
    async with advertised_broker(name, mqtt_broker.port):
        running = await start_service(settings)
        await probe.alert(source="boiler", type="pressure", severity="high")
        created = (await probe.wait_events("created", 1))[0]
        assert created["source"] == "boiler"
        assert f"using MQTT broker '{name}' at 127.0.0.1:{mqtt_broker.port}" in caplog.text

        txt = await browse_homealert(settings.mqtt.base_topic)
        assert txt["base_topic"] == settings.mqtt.base_topic
        assert txt["version"]
        assert set(txt) == {"version", "base_topic"}  # nothing else, nothing secret
        await running.stop()


async def test_resolver_keeps_looking_until_a_broker_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="homealert_mqtt.zeroconf_discovery")
    name = f"Late broker {uuid.uuid4().hex[:6]}"
    resolver = ZeroconfResolver(
        name, browse_timeout=0.3, interfaces=LOOPBACK, retry_initial=0.2, retry_cap=0.2
    )
    search = asyncio.create_task(resolver())
    while "no MQTT broker" not in caplog.text:  # it says so, and goes on looking
        assert not search.done()
        await asyncio.sleep(0.05)
    assert f"no MQTT broker '{name}' advertises _mqtt._tcp.local." in caplog.text
    async with advertised_broker(name, 18830):
        found = await asyncio.wait_for(search, 10)
        assert found == BrokerAddress("127.0.0.1", 18830)
        assert resolver.browses >= 2
        # The other link, asking right after: the same answer, without a new browse.
        browses = resolver.browses
        assert await resolver() == found
        assert resolver.browses == browses


def test_announce_defaults(make_settings: Callable[..., Settings]) -> None:
    assert not make_settings().zeroconf.announce  # a broker URL: no mDNS unless asked
    assert make_settings({"zeroconf": {"announce": True}}).zeroconf.announce
    assert not make_settings({"zeroconf": {"announce": False}}, mqtt_url="auto").zeroconf.announce
