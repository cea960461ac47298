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
  one wakes the broker; and each write first registers the socket with the event loop
  (through its wake-up pipe, as if from another thread) and unregisters it after.

`buffer_reads` gives paho's reader a userspace buffer, so one `recv()` takes in
everything that has arrived, and frames the packets the lean handlers take straight
from it.
`lean_publishes` hands a plain QoS 0 or 1 PUBLISH straight to a callback.
`lean_publisher` queues a QoS 1 PUBLISH without paho's per-message objects, and
`lean_pubacks` settles every PUBACK with one callback. `batch_writes` sends what is
queued in one `send()` at the end of the event loop's pass.

Each replaces attributes of one client instance only, keeps paho's bookkeeping for
paho's own messages, and hands anything unusual to paho. paho is pinned below 3 in
pyproject.toml, and a paho without these attributes simply keeps its own paths.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import weakref
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

_LOGGER = logging.getLogger(__name__)

READ_CHUNK = 65536  # bytes taken from the socket at once
READ_MAX = 128  # socket reads per wake-up of the event loop, so one link cannot hog it
WRITE_CHUNK = 65536  # bytes handed to one send()

_NEEDED = (
    "_sock",
    "_sock_recv",
    "_in_packet",
    "_msgtime_mutex",
    "_out_messages",
    "_out_message_mutex",
    "_inflight_messages",
    "_update_inflight",
    "_handle_pubackcomp",
)

# A lean handler for one packet type: (header byte, buffer, body start, body end) ->
# whether it took the packet (False: paho reads and handles it instead).
_Handler = Callable[[int, bytes, int, int], bool]
_handlers: weakref.WeakKeyDictionary[paho.Client, dict[int, _Handler]] = weakref.WeakKeyDictionary()


def _supported(client: paho.Client) -> bool:
    missing = [name for name in _NEEDED if not hasattr(client, name)]
    if missing:
        _LOGGER.debug("paho without %s: keeping its own read path", ", ".join(missing))
    return not missing


def _add_handler(client: paho.Client, packet_type: int, handler: _Handler) -> None:
    _handlers.setdefault(client, {})[packet_type] = handler


class _ReadBuffer:
    """What one `recv()` took in: framed by `buffer_reads`, or handed out to paho's
    small reads."""

    def __init__(self, client: paho.Client) -> None:
        self._raw_recv: Callable[[int], bytes] = client._sock_recv  # noqa: SLF001
        self.data = b""
        self.pos = 0
        self.reads = 0  # socket reads in this wake-up of the event loop
        # The last read found the socket empty, or took in less than it could: what
        # arrives later makes the socket readable, and the event loop calls us again.
        self.drained = False

    def fill(self) -> None:
        """Raises what the socket raises: BlockingIOError when nothing is there."""
        self.reads += 1
        try:
            data = self._raw_recv(READ_CHUNK)
        except BlockingIOError:
            self.drained = True
            raise
        self.data, self.pos = data, 0
        self.drained = len(data) < READ_CHUNK

    def recv(self, size: int) -> bytes:
        if self.pos >= len(self.data):
            self.fill()
            if not self.data:
                return self.data  # the peer closed the connection
        start = self.pos
        self.pos = min(start + size, len(self.data))
        return self.data[start : self.pos]


def buffer_reads(client: paho.Client, hold: Callable[[], bool] | None = None) -> None:
    """One `recv()` per arrival instead of three per packet; every packet that has
    arrived read in one wake-up of the event loop (up to READ_MAX socket reads); and
    the packets that `lean_publishes` and `lean_pubacks` take framed straight from the
    buffer, without paho's byte-by-byte reader.

    paho's own `loop_read()` reads one packet on a connection that only receives, so the
    event loop would take in one alert per iteration and the pipeline would see batches
    of a few. The buffer must be empty when `loop_read()` returns: the event loop only
    calls it again when the socket becomes readable.

    `hold()` True: take nothing more from the socket in this wake-up (what the buffer
    holds is still handed out); the caller stops watching the socket meanwhile.
    """
    if not _supported(client):
        return
    buffer = _ReadBuffer(client)
    client._sock_recv = buffer.recv  # type: ignore[method-assign,assignment]  # noqa: SLF001
    read_one = client.loop_read  # paho: one packet (or part of one), through the buffer

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:  # paho's signature
        buffer.reads = 0
        while client._sock is not None:  # noqa: SLF001
            if buffer.pos >= len(buffer.data):
                if buffer.reads >= READ_MAX or (buffer.reads and buffer.drained):
                    break
                if hold is not None and hold():
                    break
                try:
                    buffer.fill()
                except BlockingIOError:
                    break
                except OSError:
                    return read_one()  # paho meets the error (or the closed connection)
                if not buffer.data:
                    return read_one()
            if client._in_packet["command"] == 0:  # noqa: SLF001 - paho is between packets
                _take_framed(client, buffer)
            if buffer.pos < len(buffer.data):
                # A packet the lean handlers leave to paho, or the start of one that
                # has not fully arrived: paho reads it, refilling the buffer as it goes.
                rc = read_one()
                if rc != paho.MQTT_ERR_SUCCESS:
                    return rc
        return paho.MQTT_ERR_SUCCESS

    client.loop_read = loop_read  # type: ignore[method-assign]


def _take_framed(client: paho.Client, buffer: _ReadBuffer) -> None:
    """Hand every complete packet at the front of the buffer that a lean handler takes
    to it; stop at the first one it does not (or that has not fully arrived)."""
    handlers = _handlers.get(client)
    if not handlers:
        return
    data, pos = buffer.data, buffer.pos
    size = len(data)
    taken = False
    while pos < size:
        header = data[pos]
        handler = handlers.get(header & 0xF0)
        if handler is None:
            break
        length, at, shift = 0, pos + 1, 0
        while at < size and shift <= 21:  # MQTT's variable-length integer: 1-4 bytes
            byte = data[at]
            at += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        else:
            break  # not all here (or malformed: paho says so)
        end = at + length
        if end > size or not handler(header, data, at, end):
            break
        pos = end
        taken = True
    buffer.pos = pos
    if taken:
        with client._msgtime_mutex:  # noqa: SLF001 - the keepalive's clock, as paho keeps it
            client._last_bytes_received = paho.time_func()  # noqa: SLF001


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

    def take(header: int, packet: bytes | bytearray, start: int, stop: int) -> bool:
        qos = (header & 0x06) >> 1
        if qos > 1 or stop - start < 2:
            return False
        end = start + 2 + ((packet[start] << 8) | packet[start + 1])
        if end == start + 2 or end + 2 * qos + v5 > stop:
            return False  # an empty topic (an alias) or too short: paho decides
        try:
            topic = packet[start + 2 : end].decode("utf-8")
        except UnicodeDecodeError:
            return False
        mid = 0
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        if v5:
            if packet[end] != 0:
                return False  # properties
            end += 1
        deliver(topic, bytes(packet[end:stop]), header & 0x0F, mid)
        return True

    def handle() -> MQTTErrorCode:  # paho's reader, for a packet that arrived in parts
        packet: bytearray = client._in_packet["packet"]  # noqa: SLF001
        if take(client._in_packet["command"], packet, 0, len(packet)):  # noqa: SLF001
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return full()

    client._handle_publish = handle  # type: ignore[method-assign]  # noqa: SLF001
    _add_handler(client, 0x30, take)


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

    def settle(mid: int, reason: int) -> MQTTErrorCode:
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

    def take(header: int, packet: bytes | bytearray, start: int, stop: int) -> bool:
        if header != 0x40 or stop - start < 2:
            return False  # paho reports a malformed packet
        # A failed send of what waited for room surfaces on the connection's next write.
        settle(*_puback(packet, start, stop))
        return True

    def handle(cmd: str) -> MQTTErrorCode:  # paho's reader, for a packet that arrived in parts
        packet: bytearray = client._in_packet["packet"]  # noqa: SLF001
        if cmd != "PUBACK" or len(packet) < 2:
            return full(cmd)  # type: ignore[arg-type]  # paho reports a malformed packet
        return settle(*_puback(packet, 0, len(packet)))

    client._handle_pubackcomp = handle  # type: ignore[method-assign]  # noqa: SLF001
    _add_handler(client, 0x40, take)


def _puback(packet: bytes | bytearray, start: int, stop: int) -> tuple[int, int]:
    """(packet id, reason): MQTT 5 may add a reason code and properties (ignored); 3.1.1
    has only the id."""
    return (packet[start] << 8) | packet[start + 1], packet[start + 2] if stop - start > 2 else 0


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
        client._call_socket_register_write()  # noqa: SLF001 - looked up now: see batch_writes
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


def batch_writes(client: paho.Client) -> None:
    """Everything paho has queued leaves in one `send()`, at the end of the event loop's
    current pass, instead of one `send()` per packet once the loop has been woken and
    has seen the socket writable.

    paho asks for a write by registering the socket with the event loop (aiomqtt's
    `add_writer`, from another thread's point of view: it also writes to the loop's
    wake-up pipe), and unregisters it after. Here that request schedules one flush on
    the loop instead; the socket is registered only when it cannot take everything,
    or when paho asks from another thread (its connect runs in an executor). A queue
    holding a packet with side effects in paho (a QoS 0 PUBLISH's on_publish, a
    DISCONNECT) is written by paho's own path from that packet on.
    """
    if not _supported(client) or not all(
        hasattr(client, name)
        for name in ("_out_packet", "_call_socket_register_write", "_call_socket_unregister_write")
    ):
        return
    out: collections.deque[Any] = client._out_packet  # noqa: SLF001
    paho_write = client.loop_write
    register = client._call_socket_register_write  # noqa: SLF001 - the event loop watches
    flush_due = False

    def loop_write() -> MQTTErrorCode:
        sock: Any = client._sock  # noqa: SLF001
        if sock is None:
            return paho_write()
        while out:
            data, size = _next_write(out)
            if not size:
                return paho_write()
            try:
                sent = sock.send(data)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                sent = 0
            except OSError:
                return paho_write()  # paho meets the error and reports the lost connection
            _written(out, sent)
            if sent < size:
                register()  # the socket is full: write the rest once it can take more
                break
        with client._msgtime_mutex:  # noqa: SLF001 - the keepalive's clock, as paho keeps it
            client._last_msg_out = paho.time_func()  # noqa: SLF001
        if not out:
            client._call_socket_unregister_write()  # noqa: SLF001
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def flush() -> None:
        nonlocal flush_due
        flush_due = False
        if out and client._sock is not None:  # noqa: SLF001
            client.loop_write()

    def write_soon() -> None:
        nonlocal flush_due
        if flush_due or client._sock is None:  # noqa: SLF001
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            register()  # not the event loop's thread
            return
        flush_due = True
        loop.call_soon(flush)

    client.loop_write = loop_write  # type: ignore[method-assign]
    client._call_socket_register_write = write_soon  # type: ignore[method-assign]  # noqa: SLF001


def _next_write(out: collections.deque[Any]) -> tuple[bytes | bytearray, int]:
    """The queued packets' bytes for one send(), up to WRITE_CHUNK, and how many; none
    from a packet with side effects in paho on."""
    parts = []
    size = 0
    for packet in out:
        kind = packet["command"] & 0xF0
        if kind == paho.DISCONNECT or (kind == paho.PUBLISH and packet["qos"] == 0):
            break
        data = packet["packet"]
        parts.append(data[packet["pos"] :] if packet["pos"] else data)
        size += packet["to_process"]
        if size >= WRITE_CHUNK:
            break
    return (parts[0] if len(parts) == 1 else b"".join(parts)), size


def _written(out: collections.deque[Any], sent: int) -> None:
    """Drop what a send() took from the front of the queue."""
    while sent:
        packet = out[0]
        if packet["to_process"] <= sent:
            sent -= packet["to_process"]
            out.popleft()
        else:
            packet["pos"] += sent
            packet["to_process"] -= sent
            sent = 0
