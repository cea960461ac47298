"""Connection loops that never give up: the inbound (persistent session, manual PUBACK)
and the outbound (publishes state; carries the last will).

aiomqtt owns connecting, subscribing and publishing. Two things it does not expose are
taken from its paho client: manual acknowledgement (so a PUBACK leaves only after the
alert is committed to Redis) and the DUP flag (so a redelivery is recognised).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt
import paho.mqtt.client as paho

from homealert_mqtt.config.settings import MqttSettings
from homealert_mqtt.mqtt.backoff import Backoff
from homealert_mqtt.mqtt.client_options import client_kwargs
from homealert_mqtt.mqtt.paho_speedups import (
    Deliver,
    Publish,
    batch_writes,
    buffer_reads,
    lean_pubacks,
    lean_publisher,
    lean_publishes,
)
from homealert_mqtt.transient import Outage

_LOGGER = logging.getLogger(__name__)


class BrokerUnavailableError(ConnectionError):
    """A message did not reach the broker: the link was down, or dropped before the
    broker acknowledged it. Worth retrying once the link is back."""


class BrokerRefusedError(Exception):
    """The broker acknowledged a publish with an MQTT 5 failure reason code (an ACL)."""


# Publishes awaiting their PUBACK before publish() waits: at most the broker's Receive
# Maximum (Mosquitto's max_inflight_messages). Counted here, not by paho, whose own
# window scans every message in flight on each PUBACK.
OUTBOUND_INFLIGHT = 1000
# Messages read ahead of the pipeline before the inbound link stops reading the socket
# (and reads on below half of it). Past it, a flood waits in the broker, not in memory,
# even when the broker sends more than its in-flight window, as Mosquitto 2.0 does.
INBOUND_QUEUE_MAX = 4096
HOLD_CHECK_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    qos: int
    mid: int
    dup: bool
    retain: bool
    generation: int  # which connection delivered it; acks only go back on that one
    # Which broker session delivered it: packet ids restart with a new session, so the
    # redelivery check (ingest.lua) keeps its packet-id digests per session.
    session: int = 0


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int


Resolver = Callable[[], Awaitable[BrokerAddress]]


class Sessions(Protocol):
    """Numbers the broker sessions of this client id (kept in Redis across restarts)."""

    async def current(self) -> int: ...

    async def fresh(self, previous: int) -> int: ...


def static_resolver(settings: MqttSettings) -> Resolver:
    async def resolve() -> BrokerAddress:
        return BrokerAddress(settings.host, settings.port)

    return resolve


class InboundLink:
    """Subscribes at QoS 1 with a persistent session and hands messages to a queue."""

    def __init__(
        self,
        settings: MqttSettings,
        resolve: Resolver,
        filters: list[str],  # copied: add_filter() extends our own list
        queue: asyncio.Queue[Inbound],
        on_subscribed: Callable[[bool], Awaitable[None]],
        *,
        after: asyncio.Event | None = None,
        sessions: Sessions | None = None,
        outage: Outage | None = None,
    ) -> None:
        self._settings = settings
        self._outage = outage or Outage("MQTT broker")
        self._sessions = sessions
        self._session = 0
        self._session_present = False
        # Connect only once this is set (the outbound link): alerts taken in before the
        # service can publish would lose their events (state is resynced, events are not).
        self._after = after
        self._resolve = resolve
        self._filters = list(filters)
        # Filters every replica subscribes to in full, also with a shared group: a
        # shared subscription gets no retained messages (MQTT 5, 4.8.2).
        self._unshared: set[str] = set()
        self._queue = queue
        self._on_subscribed = on_subscribed
        self._client: aiomqtt.Client | None = None
        self.generation = 0
        self.connected = asyncio.Event()

    def add_filter(self, topic_filter: str, *, shared: bool = True) -> None:
        self._filters.append(topic_filter)
        if not shared:
            self._unshared.add(topic_filter)

    def ack(self, message: Inbound) -> None:
        """PUBACK a message, unless its connection is gone (the broker will resend it)."""
        client = self._client
        if message.qos == 0 or client is None or message.generation != self.generation:
            return
        client._client.ack(message.mid, message.qos)  # noqa: SLF001 - see module docstring

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            if self._after is not None:
                await self._after.wait()
            address = await self._resolve()
            kwargs = client_kwargs(
                self._settings,
                address.host,
                address.port,
                client_id=self._settings.client_id,
                persistent=True,
            )
            client = aiomqtt.Client(**kwargs)
            paho_client: paho.Client = client._client  # noqa: SLF001
            paho_client.manual_ack_set(True)
            buffer_reads(paho_client, _ReadHold(client, self._queue).hold)
            batch_writes(paho_client)  # the PUBACKs of a batch
            self.generation += 1
            generation = self.generation
            deliver = self._receiver(generation)
            paho_client.on_message = _on_message(deliver)
            lean_publishes(paho_client, deliver)
            self._watch_session(paho_client)
            if self._sessions is not None:
                # Before connecting: a resumed session redelivers right after CONNACK.
                self._session = await self._sessions.current()
            try:
                async with _connected(client):
                    self._client = client
                    if self._sessions is not None and not self._session_present:
                        # The broker kept nothing: packet ids start again at 1, and the
                        # old session's digests must not match the new session's messages.
                        self._session = await self._sessions.fresh(self._session)
                    await self._subscribe(client)
                    backoff.reset()
                    self._outage.ok()
                    self.connected.set()
                    _LOGGER.info(
                        "receiving alerts from %s:%s as %r",
                        address.host,
                        address.port,
                        self._settings.client_id,
                    )
                    await self._on_subscribed(True)
                    await _wait_disconnected(client)
            except aiomqtt.MqttError as err:
                delay = backoff.next_delay()
                self._outage.failed(err, f"receiving, {address.host}:{address.port}")
                self._mark_down()
                await self._on_subscribed(False)
                await asyncio.sleep(delay)
            finally:
                self._mark_down()

    def _mark_down(self) -> None:
        self._client = None
        self.connected.clear()

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        group = self._settings.shared_group
        topics = []
        for topic in self._filters:
            # With a shared group each message reaches one replica, commands included.
            share = group and self._settings.protocol == 5 and topic not in self._unshared
            name = f"$share/{group}/{topic}" if share else topic
            topics.append((name, 1))
        await client.subscribe(topics)

    def _watch_session(self, paho_client: paho.Client) -> None:
        aiomqtt_on_connect = paho_client.on_connect

        def on_connect(*args: Any) -> None:  # (client, userdata, flags, reason, properties)
            self._session_present = bool(getattr(args[2], "session_present", False))
            if aiomqtt_on_connect is not None:
                aiomqtt_on_connect(*args)

        paho_client.on_connect = on_connect

    def _receiver(self, generation: int) -> Deliver:
        def deliver(topic: str, payload: bytes, header: int, mid: int) -> None:
            # Called on the event loop's thread (aiomqtt reads the socket there).
            self._queue.put_nowait(
                Inbound(
                    topic=topic,
                    payload=payload,
                    qos=(header >> 1) & 3,
                    mid=mid,
                    dup=bool(header & 0x08),
                    retain=bool(header & 0x01),
                    generation=generation,
                    session=self._session,
                )
            )

        return deliver


class _ReadHold:
    """Stops reading an aiomqtt client's socket while the queue holds INBOUND_QUEUE_MAX
    messages, and reads on once the pipeline has taken half of them."""

    def __init__(self, client: aiomqtt.Client, queue: asyncio.Queue[Inbound]) -> None:
        self._client = client
        self._queue = queue
        self._held: Any = None  # the socket whose reader was taken off the event loop

    def hold(self) -> bool:
        if self._queue.qsize() < INBOUND_QUEUE_MAX:
            return False
        sock: Any = self._client._client.socket()  # noqa: SLF001
        if sock is None or _decrypted_waiting(sock):
            return False  # TLS bytes already decrypted: aiomqtt reads on until none are left
        if self._held is None:
            loop = asyncio.get_running_loop()
            self._held = sock
            loop.remove_reader(sock.fileno())
            _LOGGER.debug("%d messages wait for the pipeline: reading paused", self._queue.qsize())
            loop.call_later(HOLD_CHECK_SECONDS, self._check)
        return True

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        sock: Any = self._held
        self._held = None
        if sock is None:
            return
        fd = sock.fileno()
        if sock is not self._client._client.socket():  # noqa: SLF001
            return  # the connection is gone; a new one reads from the start
        if self._queue.qsize() > INBOUND_QUEUE_MAX // 2:
            self._held = sock
            loop.call_later(HOLD_CHECK_SECONDS, self._check)
            return
        loop.add_reader(fd, self._read)
        self._read()  # what the read buffer still holds: the socket may never signal it

    def _read(self) -> None:
        """What aiomqtt's own reader does, which removing it took off the event loop."""
        paho_client = self._client._client  # noqa: SLF001
        try:
            while True:
                paho_client.loop_read()
                sock = paho_client.socket()
                if sock is None or not _decrypted_waiting(sock):
                    break
        except Exception as exc:  # noqa: BLE001 - as aiomqtt: the connection is broken
            disconnected = self._client._disconnected  # noqa: SLF001
            if not disconnected.done():
                disconnected.set_exception(exc)


def _decrypted_waiting(sock: Any) -> bool:
    """A TLS socket holds bytes it has decrypted: the event loop will not say so."""
    pending = getattr(sock, "pending", None)
    return pending is not None and pending() > 0


def _on_message(deliver: Deliver) -> Callable[[paho.Client, Any, paho.MQTTMessage], None]:
    """paho's own path (see lean_publishes) to the same place."""

    def on_message(_client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        header = (0x08 if msg.dup else 0) | msg.qos << 1 | (0x01 if msg.retain else 0)
        deliver(msg.topic, bytes(msg.payload), header, msg.mid)

    return on_message


class OutboundLink:
    """Publishes state. While it is down, publishes are dropped and a full resync runs on
    reconnect (state is in Redis), so the pipeline never blocks on a broker outage."""

    def __init__(
        self,
        settings: MqttSettings,
        resolve: Resolver,
        status_topic: str,
        on_connected: Callable[[], Awaitable[None]],
        outage: Outage | None = None,
    ) -> None:
        self._settings = settings
        self._outage = outage or Outage("MQTT broker")
        self._resolve = resolve
        self._status_topic = status_topic
        self._on_connected = on_connected
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.dropped = 0
        self._unacked: set[int] = set()  # message ids of our publishes awaiting a PUBACK
        self._room = asyncio.Event()
        self._lean_publish: Publish | None = None
        # Publishes whose caller waits for the broker's PUBACK (notifications), by the
        # message id of the current connection; failed when that connection drops.
        self._confirming: dict[int, asyncio.Future[int]] = {}

    async def _room_for_one(self) -> aiomqtt.Client | None:
        """The connection once fewer than OUTBOUND_INFLIGHT publishes await a PUBACK,
        or None when the link is (or went) down meanwhile."""
        client = self._client
        while client is not None and len(self._unacked) >= OUTBOUND_INFLIGHT:
            self._room.clear()
            await self._room.wait()
            client = self._client
        return client

    async def publish_confirmed(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and wait until the broker has it (its PUBACK), for a message that
        must not be reported delivered when it was not: a notification. Raises
        BrokerUnavailableError when the link is down or drops first, and
        BrokerRefusedError when the broker refuses it."""
        client = await self._room_for_one()
        if client is None:
            raise BrokerUnavailableError("not connected to the MQTT broker")
        if self._lean_publish is not None:
            mid = self._lean_publish(topic, payload, retain)
        else:
            info = client._client.publish(topic, payload, qos=1, retain=retain)  # noqa: SLF001
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise BrokerUnavailableError(f"publish failed: {paho.error_string(info.rc)}")
            mid = info.mid
        self._unacked.add(mid)
        # Registered before the event loop runs again: the PUBACK cannot come earlier.
        confirmed = asyncio.get_running_loop().create_future()
        self._confirming[mid] = confirmed
        try:
            reason = await confirmed
        finally:
            if self._confirming.get(mid) is confirmed:
                del self._confirming[mid]
        if reason >= 0x80:
            raise BrokerRefusedError(f"the broker refused it (MQTT 5 reason code 0x{reason:02x})")

    def _settle_confirmed(self, mid: int, reason: int) -> None:
        confirmed = self._confirming.pop(mid, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(reason)

    def _fail_confirmed(self) -> None:
        """The connection is gone: what it had not acknowledged may never reach the
        broker, and those callers must hear so (they retry on the next connection)."""
        waiting, self._confirming = self._confirming, {}
        for confirmed in waiting.values():
            if not confirmed.done():
                confirmed.set_exception(
                    BrokerUnavailableError("connection to the MQTT broker lost before its PUBACK")
                )

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Hand a message to the connection without waiting for its PUBACK: the broker
        keeps the order, and what a lost connection had in flight is republished by the
        resync. Waits only while OUTBOUND_INFLIGHT publishes are unacknowledged."""
        client = await self._room_for_one()
        if client is None:
            self.dropped += 1
            return
        if qos == 1 and self._lean_publish is not None:
            self._unacked.add(self._lean_publish(topic, payload, retain))
            return
        info = client._client.publish(topic, payload, qos=qos, retain=retain)  # noqa: SLF001
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self.dropped += 1
            _LOGGER.debug("publish to %s failed: %s", topic, paho.error_string(info.rc))
        elif qos > 0:
            self._unacked.add(info.mid)

    def _count_acks(self, client: aiomqtt.Client) -> None:
        paho_client: paho.Client = client._client  # noqa: SLF001
        pending = client._pending_publishes  # noqa: SLF001 - aiomqtt's awaited publishes
        self._unacked.clear()
        refused = False

        def acked(mid: int, reason: int) -> None:
            nonlocal refused
            if reason >= 0x80 and not refused:  # MQTT 5: 0x80 and up are failures
                refused = True  # once per connection: an ACL would refuse every publish
                _LOGGER.warning(
                    "the broker refused a publish (MQTT 5 reason code 0x%02x): check its ACL",
                    reason,
                )
            self._unacked.discard(mid)
            if len(self._unacked) < OUTBOUND_INFLIGHT // 2:
                self._room.set()
            self._settle_confirmed(mid, reason)
            confirmation = pending.pop(mid, None)
            if confirmation is not None:
                confirmation.set()

        lean_pubacks(paho_client, acked)
        self._lean_publish = lean_publisher(paho_client)
        buffer_reads(paho_client)
        batch_writes(paho_client)

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            address = await self._resolve()
            kwargs = client_kwargs(
                self._settings,
                address.host,
                address.port,
                client_id=f"{self._settings.client_id}-out"[:64],
                persistent=False,
            )
            kwargs["will"] = aiomqtt.Will(self._status_topic, b"offline", qos=1, retain=True)
            kwargs["max_inflight_messages"] = 0  # no paho window: see OUTBOUND_INFLIGHT
            client = aiomqtt.Client(**kwargs)
            self._count_acks(client)
            client.pending_calls_threshold = OUTBOUND_INFLIGHT  # a burst is not a warning
            try:
                async with _connected(client):
                    self._client = client
                    self.connected.set()
                    self._outage.ok()
                    backoff.reset()
                    await _until_disconnected(client, self._on_connected())
            except aiomqtt.MqttError as err:
                delay = backoff.next_delay()
                self._outage.failed(err, f"publishing, {address.host}:{address.port}")
                self._client = None
                self.connected.clear()
                _release_pending_publishes(client)
                await asyncio.sleep(delay)
            finally:
                self._client = None
                self.connected.clear()
                _release_pending_publishes(client)
                self._fail_confirmed()
                self._room.set()  # a publish waiting for room sees that the link is down

    async def close(self) -> None:
        """A clean shutdown says `offline` itself (the will only fires on a lost connection)."""
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self._status_topic, b"offline", qos=1, retain=True, timeout=5)


DISCONNECT_TIMEOUT = 3.0


def _release_pending_publishes(client: aiomqtt.Client) -> None:
    """Wake publishers still waiting for a PUBACK from a connection that is gone: their
    state is republished by the resync on reconnect, and the pipeline must not wait out
    aiomqtt's publish timeout during a broker outage."""
    for confirmation in list(client._pending_publishes.values()):  # noqa: SLF001
        confirmation.set()


@contextlib.asynccontextmanager
async def _connected(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Client]:
    """`async with client`, but a disconnect that hangs (a dead socket on shutdown)
    is given up after DISCONNECT_TIMEOUT instead of blocking the service's exit."""
    await client.__aenter__()
    try:
        yield client
    finally:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(client.__aexit__(None, None, None), DISCONNECT_TIMEOUT)


async def _until_disconnected(client: aiomqtt.Client, on_connected: Awaitable[None]) -> None:
    """Run `on_connected` (the resync) beside waiting for the connection to drop.

    Awaited first, a resync whose connection dies would wait out aiomqtt's publish
    timeout on a PUBACK that cannot come, and the link would reconnect only after it.
    """
    work = asyncio.ensure_future(on_connected)
    work.add_done_callback(_log_failure)
    try:
        await _wait_disconnected(client)
    finally:
        _release_pending_publishes(client)
        work.cancel()
        await asyncio.wait([work])


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("on-connect work failed", exc_info=task.exception())


async def _wait_disconnected(client: aiomqtt.Client) -> None:
    """Block until the connection drops; raises MqttError then."""
    # Shielded: cancelling our wait must not cancel aiomqtt's own future, which its
    # __aexit__ still needs to disconnect cleanly.
    await asyncio.shield(client._disconnected)  # noqa: SLF001 - no public "wait for loss"
