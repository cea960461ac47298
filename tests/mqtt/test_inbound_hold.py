"""A flood faster than the pipeline waits in the broker, not in the service's memory: the
inbound link stops reading while its queue is full and reads on as it drains."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import aiomqtt
import pytest

from homealert_mqtt.mqtt import link
from homealert_mqtt.mqtt.link import Inbound, InboundLink, static_resolver
from tests.certs import make_certs
from tests.servers import MosquittoServer

LIMIT = 200


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"), tls=certs).start()
    yield server
    server.stop()


@pytest.mark.parametrize("broker", ["plain", "tls"])
@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_a_flood_waits_in_the_broker_and_arrives_whole_and_in_order(
    make_settings: Any,
    mqtt_broker: MosquittoServer,
    tls_broker: MosquittoServer,
    monkeypatch: pytest.MonkeyPatch,
    protocol: int | str,
    broker: str,
) -> None:
    # Over TLS, bytes already decrypted must be read on (aiomqtt's reader loops on them).
    monkeypatch.setattr(link, "INBOUND_QUEUE_MAX", LIMIT)
    server = tls_broker if broker == "tls" else mqtt_broker
    tls: dict[str, Any] = {}
    config: dict[str, Any] = {"mqtt": {"protocol": protocol}}
    if server.tls is not None:
        tls = {"tls_context": ssl.create_default_context(cafile=str(server.tls.ca))}
        config["mqtt"]["tls"] = {"ca_certs": str(server.tls.ca)}
    settings = make_settings(config, mqtt_url=server.url)
    topic = f"{settings.mqtt.base_topic}/in"
    queue: asyncio.Queue[Inbound] = asyncio.Queue()
    subscribed = asyncio.Event()

    async def on_subscribed(up: bool) -> None:
        if up:
            subscribed.set()

    inbound = InboundLink(
        settings.mqtt, static_resolver(settings.mqtt), [topic], queue, on_subscribed
    )
    task = asyncio.create_task(inbound.run())
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        payloads = [b"%05d" % i + b"x" * 200 for i in range(3000)]
        async with aiomqtt.Client("127.0.0.1", server.port, **tls) as publisher:
            for payload in payloads:
                publisher._client.publish(topic, payload, qos=1)
            await publisher.publish(topic, b"end", qos=1, timeout=20)
            await asyncio.sleep(0.5)
            # At most what one read (64 KiB) hands out past the limit.
            assert LIMIT <= queue.qsize() < LIMIT + 400
            received: list[bytes] = []
            async with asyncio.timeout(20):
                while len(received) <= len(payloads):
                    message = await queue.get()
                    inbound.ack(message)
                    received.append(message.payload)
        assert received == [*payloads, b"end"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
