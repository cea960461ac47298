"""Cheaper per-packet paths for paho's client, for the service's two connections.

Per alert the service reads one PUBLISH, writes a PUBACK and three PUBLISHes, and
reads their three PUBACKs. paho 2 spends most of that time on things the service never
uses:

- `_packet_read` reads every packet with three `recv()` calls (type byte, length byte,
  body), so a 4-byte PUBACK costs three system calls;
- `_handle_publish` builds a `Properties` table (MQTT 5), an `MQTTMessage` and a debug
  log call for every message, and matches its topic against per-topic callbacks;
- `publish()` builds an `MQTTMessage` and an `MQTTMessageInfo` (with a threading
  Condition) per message, and `_handle_pubackcomp` a `Properties` table and a
  `ReasonCode` for every PUBACK;
- `_packet_write` sends every queued packet with its own `send()`, and on loopback each
  one wakes the broker.

`buffer_reads` gives paho's reader a userspace buffer, so one `recv()` takes in
everything that has arrived, and reads on while the socket (or the buffer) holds more.
`lean_publishes` hands a plain QoS 0 or 1 PUBLISH straight to a callback.
`lean_publisher` queues a QoS 1 PUBLISH without paho's per-message objects, and
`lean_pubacks` settles every PUBACK with one callback. `coalesce_writes` corks the
socket while paho writes what is queued, so the kernel sends it as one segment.

Each replaces attributes of one client instance only, keeps paho's bookkeeping for
paho's own messages, and hands anything unusual to paho. paho is pinned below 3 in
pyproject.toml, and a paho without these attributes simply keeps its own paths.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

_LOGGER = logging.getLogger(__name__)

READ_CHUNK = 65536  # bytes taken from the socket at once
READ_MAX = 128  # socket reads per wake-up of the event loop, so one link cannot hog it

_NEEDED = (
    "_sock_recv",
    "_in_packet",
    "_out_messages",
    "_out_message_mutex",
    "_inflight_messages",
    "_update_inflight",
    "_handle_pubackcomp",
)


def _supported(client: paho.Client) -> bool:
    missing = [name for name in _NEEDED if not hasattr(client, name)]
    if missing:
        _LOGGER.debug("paho without %s: keeping its own read path", ", ".join(missing))
    return not missing


class _ReadBuffer:
    """What one `recv()` took in, handed out to paho's small reads."""

    def __init__(self, client: paho.Client) -> None:
        self._raw_recv: Callable[[int], bytes] = client._sock_recv  # noqa: SLF001
        self._data = b""
        self._pos = 0

    def holds_data(self) -> bool:
        return self._pos < len(self._data)

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._data):
            # Raises BlockingIOError when nothing is there, as paho expects of a socket.
            data = self._raw_recv(READ_CHUNK)
            if not data:
                return data  # the peer closed the connection
            self._data, self._pos = data, 0
        start = self._pos
        self._pos = min(start + size, len(self._data))
        return self._data[start : self._pos]


def buffer_reads(client: paho.Client) -> None:
    """One `recv()` per arrival instead of three per packet, and every packet that has
    arrived read in one wake-up of the event loop (up to READ_MAX socket reads).

    paho's own `loop_read()` reads one packet on a connection that only receives, so the
    event loop would take in one alert per iteration and the pipeline would see batches
    of a few. The buffer must be empty when `loop_read()` returns: the event loop only
    calls it again when the socket becomes readable.
    """
    if not _supported(client):
        return
    buffer = _ReadBuffer(client)
    client._sock_recv = buffer.recv  # type: ignore[method-assign,assignment]  # noqa: SLF001
    read_once = client.loop_read

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:  # paho's signature
        rc = read_once()
        reads = 1
        while rc == paho.MQTT_ERR_SUCCESS and client.socket() is not None:
            if not buffer.holds_data():
                if reads >= READ_MAX or not _readable(client):
                    break
                reads += 1
            rc = read_once()
        return rc

    client.loop_read = loop_read  # type: ignore[method-assign]


def _readable(client: paho.Client) -> bool:
    sock: Any = client.socket()
    if sock is None:
        return False
    pending = getattr(sock, "pending", None)  # TLS may hold decrypted bytes
    if pending is not None and pending():
        return True
    return bool(select.select([sock], [], [], 0)[0])


# (topic, payload, the flags of the PUBLISH header: DUP 0x08, QoS 0x06, RETAIN 0x01, mid)
Deliver = Callable[[str, bytes, int, int], None]


def lean_publishes(client: paho.Client, deliver: Deliver) -> None:
    """Decode a plain PUBLISH (QoS 0 or 1; on MQTT 5 without properties) and call
    `deliver(topic, payload, header, mid)`; paho sends no PUBACK for it when
    `manual_ack` is set, as for its own path.

    Anything else (QoS 2, MQTT 5 properties or a topic alias, a topic that is not UTF-8,
    a malformed packet) goes through paho, which calls `on_message`: set that to call
    `deliver` too. Per-topic callbacks (`message_callback_add`) are not consulted.
    """
    if not _supported(client) or not hasattr(client, "_handle_publish"):
        return
    full = client._handle_publish  # noqa: SLF001
    v5 = client._protocol == paho.MQTTv5  # noqa: SLF001

    def handle() -> MQTTErrorCode:
        header: int = client._in_packet["command"]  # noqa: SLF001
        packet: bytes | bytearray = client._in_packet["packet"]  # noqa: SLF001
        qos = (header & 0x06) >> 1
        size = len(packet)
        if qos > 1 or size < 2:
            return full()
        end = 2 + ((packet[0] << 8) | packet[1])
        if end == 2 or end + 2 * qos + v5 > size:
            return full()  # an empty topic (an alias) or too short: paho decides
        try:
            topic = packet[2:end].decode("utf-8")
        except UnicodeDecodeError:
            return full()
        mid = 0
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        if v5:
            if packet[end] != 0:
                return full()  # properties
            end += 1
        deliver(topic, bytes(packet[end:]), header & 0x0F, mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._handle_publish = handle  # type: ignore[method-assign]  # noqa: SLF001


def lean_pubacks(client: paho.Client, on_acked: Callable[[int, int], None]) -> None:
    """Handle every PUBACK without paho's per-packet objects: `on_acked(mid, reason)`
    (reason 0 on MQTT 3.1.1; on MQTT 5 the reason code, >= 0x80 when the broker refused
    the message) instead of paho's `on_publish`, for paho's publishes and for
    `lean_publisher`'s. paho's bookkeeping for its own publishes is kept; PUBCOMP (QoS 2)
    still goes through paho.
    """
    if not _supported(client):
        return
    full = client._handle_pubackcomp  # noqa: SLF001
    lock = client._out_message_mutex  # noqa: SLF001
    out_messages: dict[int, paho.MQTTMessage] = client._out_messages  # noqa: SLF001

    def handle(cmd: str) -> MQTTErrorCode:
        packet: bytes | bytearray = client._in_packet["packet"]  # noqa: SLF001
        if cmd != "PUBACK" or len(packet) < 2:
            return full(cmd)  # type: ignore[arg-type]  # paho reports a malformed packet
        mid = (packet[0] << 8) | packet[1]
        # MQTT 5 may add a reason code and properties (ignored); 3.1.1 has only the id.
        reason = packet[2] if len(packet) > 2 else 0
        with lock:
            message = out_messages.pop(mid, None)
        on_acked(mid, reason)
        if message is not None:  # one of paho's own publishes
            message.info._set_as_published()  # noqa: SLF001 - wakes wait_for_publish()
            if message.qos > 0:
                client._inflight_messages -= 1  # noqa: SLF001
                if client._max_inflight_messages > 0:  # noqa: SLF001
                    return client._update_inflight()  # noqa: SLF001 - send what waited
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._handle_pubackcomp = handle  # type: ignore[method-assign]  # noqa: SLF001


Publish = Callable[[str, bytes, bool], int]  # (topic, payload, retain) -> packet id


def lean_publisher(client: paho.Client) -> Publish | None:
    """A QoS 1 publish that queues the packet on paho's connection without paho's
    per-message objects (an MQTTMessage, an MQTTMessageInfo with its Condition), and
    returns its packet id. Its PUBACK reaches `lean_pubacks`' `on_acked`, which must be
    set. paho neither tracks nor resends these messages; the caller counts them, and on a
    new connection republishes what matters (the service resyncs from Redis).

    The topic must be valid for publishing (no wildcards); it is not checked here.
    """
    if not _supported(client) or not all(
        hasattr(client, name)
        for name in ("_mid_generate", "_out_packet", "_call_socket_register_write")
    ):
        return None
    v5 = client._protocol == paho.MQTTv5  # noqa: SLF001
    properties = b"\x00" if v5 else b""  # MQTT 5: an empty property length
    out_packet = client._out_packet  # noqa: SLF001
    next_mid = client._mid_generate  # noqa: SLF001
    register_write = client._call_socket_register_write  # noqa: SLF001

    def publish(topic: str, payload: bytes, retain: bool) -> int:
        mid = next_mid()
        name = topic.encode()
        body = b"".join(
            (len(name).to_bytes(2, "big"), name, mid.to_bytes(2, "big"), properties, payload)
        )
        packet = bytes((0x32 | retain,)) + _remaining_length(len(body)) + body
        # The shape paho's _packet_write expects of a queued packet.
        out_packet.append(
            {
                "command": 0x32,
                "mid": mid,
                "qos": 1,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": None,
            }
        )
        register_write()
        return mid

    return publish


def _remaining_length(size: int) -> bytes:
    """MQTT's variable-length integer."""
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(out)


def coalesce_writes(client: paho.Client) -> None:
    """Everything paho has queued when the socket is writable leaves in one segment.

    TCP_CORK holds the small sends back until it is cleared, right after paho's write
    loop, so it never delays a packet past the end of that loop. Linux only; elsewhere
    paho writes as before.
    """
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None:
        return
    write_once = client.loop_write

    def loop_write() -> MQTTErrorCode:
        sock: Any = client.socket()
        if sock is None:
            return write_once()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
        except OSError:
            return write_once()  # not TCP (a websocket wrapper, say)
        try:
            return write_once()
        finally:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, cork, 0)

    client.loop_write = loop_write  # type: ignore[method-assign]
