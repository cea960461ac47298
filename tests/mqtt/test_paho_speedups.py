"""paho's cheaper paths (mqtt/paho_speedups.py) against a real Mosquitto: nothing read is
lost or reordered, what the lean paths decode and encode is what paho would, every
PUBACK settles paho's bookkeeping, and a PUBACK that refuses a publish carries its reason."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from homealert_mqtt.mqtt import paho_speedups
from tests.servers import MosquittoServer

PROTOCOLS = [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    # Anonymous clients may write `speedups/#` but only read `denied/#`.
    acl = "topic readwrite speedups/#\ntopic read denied/#\n"
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"), acl=acl).start()
    yield server
    server.stop()


def _client(broker: MosquittoServer, protocol: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, protocol=protocol)


def _settle(client: aiomqtt.Client, acked: list[tuple[int, int]]) -> Any:
    """An on_acked that also wakes aiomqtt's awaited publishes, as OutboundLink's does."""

    def on_acked(mid: int, reason: int) -> None:
        acked.append((mid, reason))
        confirmation = client._pending_publishes.pop(mid, None)
        if confirmation is not None:
            confirmation.set()

    return on_acked


@pytest.mark.parametrize("path", ["paho", "lean"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_buffered_reads_deliver_every_message_whole_and_in_order(
    broker: MosquittoServer, protocol: aiomqtt.ProtocolVersion, path: str, tmp_path: Path
) -> None:
    # Small packets many to one recv(), and payloads larger than READ_CHUNK that arrive
    # over several reads. With lean_publishes, every packet that has fully arrived is
    # framed from the buffer; paho reads only those cut at the end of a read.
    payloads = [(b"%06d" % i) * (30_000 if i % 500 == 7 else 1) for i in range(3000)]
    topic = f"speedups/{protocol.name}/{tmp_path.name}"
    received: list[bytes] = []
    done = asyncio.Event()
    subscriber = _client(broker, protocol)
    paho = subscriber._client
    reads = {"socket": 0, "paho": 0}
    raw_recv, packet_read = paho._sock_recv, paho._packet_read

    def counting_recv(size: int) -> bytes:
        reads["socket"] += 1
        return raw_recv(size)

    def counting_read() -> Any:
        reads["paho"] += 1
        return packet_read()

    paho._sock_recv = counting_recv  # type: ignore[method-assign,assignment]
    paho._packet_read = counting_read  # type: ignore[method-assign]

    def deliver(_topic: str, payload: bytes, _header: int, _mid: int) -> None:
        received.append(payload)
        if len(received) == len(payloads):
            done.set()

    paho.on_message = lambda _c, _u, message: deliver("", bytes(message.payload), 0, 0)
    if path == "lean":
        paho_speedups.lean_publishes(paho, deliver)
    paho_speedups.buffer_reads(paho)
    async with subscriber, _client(broker, protocol) as publisher:
        # The lean path leaves the PUBACK to the caller (manual_ack): QoS 0 here.
        await subscriber.subscribe(topic, qos=1 if path == "paho" else 0)
        for payload in payloads:
            publisher._client.publish(topic, payload, qos=1)
        await asyncio.wait_for(done.wait(), 30)
    assert received == payloads
    # One recv() per arrival, not three per packet.
    assert reads["socket"] < len(payloads)
    if path == "lean":
        assert reads["paho"] < len(payloads) // 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_batched_writes_send_everything_in_order(
    broker: MosquittoServer, protocol: aiomqtt.ProtocolVersion, tmp_path: Path
) -> None:
    # Lean QoS 1 publishes, paho's own QoS 0 and 1 publishes (QoS 0 ones call
    # on_publish once written) and 2 MB payloads, more than the socket takes at once.
    topic = f"speedups/{protocol.name}/{tmp_path.name}"
    # No paho window, as for the service's publisher: it would hold paho's own QoS 1
    # publishes back and reorder them.
    client = aiomqtt.Client("127.0.0.1", broker.port, protocol=protocol, max_inflight_messages=0)
    paho = client._client
    acked: list[tuple[int, int]] = []
    published_qos0: list[int] = []
    paho_speedups.lean_pubacks(paho, _settle(client, acked))
    paho_speedups.batch_writes(paho)
    paho.on_publish = lambda _c, _u, mid, *_rest: published_qos0.append(mid)
    expected: list[bytes] = []
    async with _client(broker, protocol) as subscriber, client:
        await subscriber.subscribe(topic, qos=1)
        publish = paho_speedups.lean_publisher(paho)
        assert publish is not None
        qos0_mids = []
        for i in range(1500):
            payload = (b"%05d" % i) * (400_000 if i % 500 == 3 else 1)
            expected.append(payload)
            if i % 100 == 50:
                qos0_mids.append(paho.publish(topic, payload, qos=0).mid)
            elif i % 3 == 1:
                paho.publish(topic, payload, qos=1)
            else:
                publish(topic, payload, False)
        received: list[bytes] = []
        async with asyncio.timeout(30):
            async for message in subscriber.messages:
                received.append(bytes(message.payload))
                if len(received) == len(expected):
                    break
    # One publisher and one connection: the broker keeps their order, except that a
    # QoS 0 message may overtake QoS 1 ones queued behind the subscriber's window.
    qos0 = {expected[i] for i in range(50, len(expected), 100)}
    assert [p for p in received if p not in qos0] == [p for p in expected if p not in qos0]
    assert sorted(received) == sorted(expected)
    assert published_qos0 == qos0_mids
    assert len(acked) == len(expected) - len(qos0_mids)
    assert not paho._out_packet


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_lean_pubacks_settle_every_publish(
    broker: MosquittoServer, protocol: aiomqtt.ProtocolVersion, tmp_path: Path
) -> None:
    client = _client(broker, protocol)
    paho = client._client
    acked: list[tuple[int, int]] = []
    paho_speedups.lean_pubacks(paho, _settle(client, acked))
    paho_speedups.buffer_reads(paho)
    async with client:
        # More than paho's default window of 20 in flight: the rest wait for room,
        # which the lean path must make.
        mids = [paho.publish(f"speedups/{tmp_path.name}", b"x", qos=1).mid for _ in range(2000)]
        await client.publish(f"speedups/{tmp_path.name}", b"last", qos=1, timeout=10)
    assert sorted(mid for mid, _reason in acked[:-1]) == sorted(mids)
    assert all(reason < 0x80 for _mid, reason in acked)
    assert paho._out_messages == {}
    assert paho._inflight_messages == 0


async def test_a_refusing_puback_carries_its_reason(
    broker: MosquittoServer, tmp_path: Path
) -> None:
    client = _client(broker, aiomqtt.ProtocolVersion.V5)
    acked: list[tuple[int, int]] = []
    paho_speedups.lean_pubacks(client._client, _settle(client, acked))
    async with client:
        await client.publish(f"denied/{tmp_path.name}", b"x", qos=1, timeout=10)
        await client.publish(f"speedups/{tmp_path.name}", b"x", qos=1, timeout=10)
    assert [reason >= 0x80 for _mid, reason in acked] == [True, False]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_lean_publisher_publishes_what_paho_would(
    broker: MosquittoServer, protocol: aiomqtt.ProtocolVersion, tmp_path: Path
) -> None:
    base = f"speedups/{protocol.name}/{tmp_path.name}"
    # Remaining lengths of one, two and three bytes.
    sizes = {"tiny": 0, "small": 100, "medium": 200, "large": 20_000}
    client = _client(broker, protocol)
    acked: list[tuple[int, int]] = []
    paho_speedups.lean_pubacks(client._client, _settle(client, acked))
    async with _client(broker, protocol) as subscriber, client:
        await subscriber.subscribe(f"{base}/#", qos=1)
        publish = paho_speedups.lean_publisher(client._client)
        assert publish is not None
        mids = [
            publish(f"{base}/{name}", bytes([65 + i % 26 for i in range(size)]), name == "large")
            for name, size in sizes.items()
        ]
        received = {}
        async with asyncio.timeout(10):
            async for message in subscriber.messages:
                received[str(message.topic).rsplit("/", 1)[1]] = (
                    bytes(message.payload),
                    message.qos,
                )
                if len(received) == len(sizes):
                    break
        await client.publish(f"{base}/end", b"", qos=1, timeout=10)  # after every PUBACK
    for name, size in sizes.items():
        assert received[name] == (bytes([65 + i % 26 for i in range(size)]), 1)
    assert sorted(mid for mid, _reason in acked[:-1]) == sorted(mids)
    # The retained one stays.
    async with _client(broker, protocol) as reader:
        await reader.subscribe(f"{base}/large", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(reader.messages))
        assert message.retain
        await reader.publish(f"{base}/large", b"", qos=1, retain=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_lean_publishes_decode_what_paho_decodes(
    broker: MosquittoServer, protocol: aiomqtt.ProtocolVersion, tmp_path: Path
) -> None:
    base = f"speedups/{protocol.name}/{tmp_path.name}"
    received: list[tuple[str, str, bytes, int, int]] = []  # (path, topic, payload, header, mid)
    done = asyncio.Event()
    subscriber = _client(broker, protocol)
    paho = subscriber._client
    paho.manual_ack_set(True)

    def record(path: str) -> paho_speedups.Deliver:
        def deliver(topic: str, payload: bytes, header: int, mid: int) -> None:
            received.append((path, topic, payload, header, mid))
            if payload == b"last":
                done.set()

        return deliver

    def on_message(_client: Any, _userdata: Any, msg: Any) -> None:
        header = (0x08 if msg.dup else 0) | msg.qos << 1 | (0x01 if msg.retain else 0)
        record("paho")(msg.topic, bytes(msg.payload), header, msg.mid)

    paho.on_message = on_message
    paho_speedups.lean_publishes(paho, record("lean"))
    paho_speedups.buffer_reads(paho)
    props = None
    if protocol == aiomqtt.ProtocolVersion.V5:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [("k", "v")]
    async with _client(broker, protocol) as publisher:
        await publisher.publish(f"{base}/retained", b"kept", qos=1, retain=True)
        async with subscriber:
            await subscriber.subscribe(f"{base}/#", qos=1)
            await publisher.publish(f"{base}/q0", b"zero", qos=0)
            await publisher.publish(f"{base}/k\u00fcche", b"", qos=1)
            await publisher.publish(f"{base}/props", b"with properties", qos=1, properties=props)
            await publisher.publish(f"{base}/q1", b"last", qos=1)
            await asyncio.wait_for(done.wait(), 10)
            for _path, _topic, _payload, header, mid in received:
                if header & 0x06:
                    paho.ack(mid, 1)
        await publisher.publish(f"{base}/retained", b"", qos=1, retain=True)
    seen = {
        topic.removeprefix(base + "/"): (path, payload, header)
        for path, topic, payload, header, _ in received
    }
    qos1 = 0x02
    assert seen["retained"] == ("lean", b"kept", qos1 | 0x01)
    assert seen["q0"] == ("lean", b"zero", 0)
    assert seen["k\u00fcche"] == ("lean", b"", qos1)
    assert seen["q1"] == ("lean", b"last", qos1)
    props_path = "paho" if protocol == aiomqtt.ProtocolVersion.V5 else "lean"
    assert seen["props"] == (props_path, b"with properties", qos1)
    assert all(mid > 0 for _p, _t, _pl, header, mid in received if header & 0x06)
