"""Cheaper per-packet paths for paho's client, for the service's two connections.

Per alert the service reads one PUBLISH and one PUBACK for each of its three
publishes. paho 2 spends most of its time there on things the service never uses:

- `_handle_publish` builds a `Properties` table (MQTT 5), an `MQTTMessage` and a debug
  log line for every message, and matches its topic against per-topic callbacks;

- `_packet_read` reads every packet with three `recv()` calls (type byte, length
  byte, body), so a 4-byte PUBACK costs three system calls;
- `_handle_pubackcomp` builds a `Properties` object (a fresh table of every MQTT 5
  property) and a `ReasonCode` for every PUBACK, before the callback chain.

- `_packet_write` sends every queued packet with its own `send()`, and on loopback
  each one wakes the broker (a state, a group and an event per alert: three wake-ups
  where one does).

`buffer_reads` gives paho's reader a userspace buffer, so one `recv()` takes in
everything that has arrived, and reads on while the socket (or the buffer) holds
more. `lean_publishes` hands a plain QoS 0 or 1 PUBLISH straight to a callback.
`lean_pubacks` acknowledges a plain successful PUBACK directly; anything else
(an error reason code, properties, a PUBCOMP) still goes through paho.
`coalesce_writes` corks the socket while paho writes what is queued, so the kernel
sends it as one segment when paho is done.

Both only replace attributes of one client instance and keep paho's bookkeeping
(`_out_messages`, `_inflight_messages`, the message info); paho is pinned below 3 in
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
        self._client = client
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


def lean_pubacks(client: paho.Client, on_acked: Callable[[int], None]) -> None:
    """Handle a plain successful PUBACK without paho's per-packet objects.

    `on_acked(mid)` is called for each such PUBACK of ours, instead of paho's
    `on_publish`. Any other PUBACK (an MQTT 5 reason code >= 0x80, properties) and
    PUBCOMP still go through paho, which calls `on_publish` with the reason.
    """
    if not _supported(client):
        return
    full = client._handle_pubackcomp  # noqa: SLF001
    lock = client._out_message_mutex  # noqa: SLF001
    out_messages: dict[int, paho.MQTTMessage] = client._out_messages  # noqa: SLF001

    def handle(cmd: str) -> MQTTErrorCode:
        packet: bytes | bytearray = client._in_packet["packet"]  # noqa: SLF001
        # MQTT 5 may add a reason code (0x00 success, 0x10 no subscribers) and an empty
        # property length; 3.1.1 has only the packet id.
        if cmd != "PUBACK" or not (
            len(packet) == 2
            or (len(packet) == 3 and packet[2] in (0x00, 0x10))
            or (len(packet) == 4 and packet[2] in (0x00, 0x10) and packet[3] == 0)
        ):
            return full(cmd)  # type: ignore[arg-type]
        mid = (packet[0] << 8) | packet[1]
        with lock:
            message = out_messages.pop(mid, None)
        if message is None:
            return MQTTErrorCode.MQTT_ERR_SUCCESS  # a duplicate PUBACK
        message.info._set_as_published()  # noqa: SLF001 - wakes wait_for_publish()
        on_acked(mid)
        if message.qos > 0:
            client._inflight_messages -= 1  # noqa: SLF001
            if client._max_inflight_messages > 0:  # noqa: SLF001
                return client._update_inflight()  # noqa: SLF001 - send what waited for room
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._handle_pubackcomp = handle  # type: ignore[method-assign]  # noqa: SLF001


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
