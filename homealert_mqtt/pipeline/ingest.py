"""The chain for alerts and commands coming in over MQTT.

    validate -> fingerprint -> prioritise -> store (ingest.lua: dedup, group, retention)
             -> publish (alert, group, events) -> PUBACK

Alerts are stored a chunk per script call, with a few calls in flight on one Redis
connection, so Redis works while the service publishes what it answered. A message is
acknowledged to the broker only after Redis has committed it; a message that fails
validation is answered on `<base>/error` and acknowledged, so it never blocks those behind
it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from homealert_mqtt.config.settings import AlertSettings
from homealert_mqtt.escalation.plan import Start
from homealert_mqtt.models import AlertRecord, IncomingAlert, Priority
from homealert_mqtt.mqtt.link import Inbound
from homealert_mqtt.noise.gate import NOT_QUIET, Quiet
from homealert_mqtt.noise.types import behaviour_of
from homealert_mqtt.pipeline.commands import CommandHandler
from homealert_mqtt.pipeline.fingerprint import group_identity, identify, partial_match
from homealert_mqtt.pipeline.prioritise import prioritise
from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.pipeline.validate import Limits, Rejected, parse
from homealert_mqtt.store.alert_store import (
    INGEST_CHUNK,
    AlertStore,
    IngestRequest,
    IngestResult,
    IngestStream,
)
from homealert_mqtt.store.scripts import is_script_bug
from homealert_mqtt.topics import Topics

_LOGGER = logging.getLogger(__name__)

# Script calls sent ahead of the one whose answer is awaited: Redis works on them while
# the service publishes (each is ~5 ms of Redis time at INGEST_CHUNK alerts).
CHUNKS_IN_FLIGHT = 4


# What keeps an alert quiet, from its matcher fields (noise/gate.py).
SilencesFor = Callable[[Mapping[str, Any]], Quiet]


@dataclass(frozen=True, slots=True)
class Prepared:
    message: Inbound
    request: IngestRequest


def store_request(
    alert: IncomingAlert,
    attributes_json: str,
    settings: AlertSettings,
    start_plan: Mapping[Priority, Start],
    *,
    client_id: str = "",
    mid: int = 0,
    dup: bool = False,
    digest: str = "",
    silences_for: SilencesFor | None = None,
) -> IngestRequest:
    """What ingest.lua needs to store a validated alert: its identity, group, priority
    and first escalation step, the silences on for it (`silences_for`, see noise/gate.py)
    and the MQTT message's redelivery check (`client_id` empty: none)."""
    identity = identify(alert, settings.dedup.attributes)
    grouping = settings.grouping
    group = group_identity(alert, grouping.attributes) if grouping.enabled else None
    priority = prioritise(alert, settings.priorities, settings.default_priority)
    start = start_plan.get(priority)
    behaviour = behaviour_of(settings.types, alert.type)
    quiet = NOT_QUIET
    if silences_for is not None and alert.status == "firing":
        quiet = silences_for(
            {
                "id": identity.base_id,
                "source": alert.source,
                "type": alert.type,
                "severity": alert.severity,
                "priority": priority.value,
                "group_id": group.base_group_id if group else None,
                "attributes": alert.attributes,
            }
        )
    return IngestRequest(
        fingerprint=identity.fingerprint,
        base_id=identity.base_id,
        status=alert.status,
        source=alert.source,
        type=alert.type,
        severity=alert.severity or "",
        priority=priority.value,
        message=alert.message,
        attributes_json=attributes_json,
        timestamp_ms=alert.timestamp_ms,
        group_key_hash=group.key_hash if group else "",
        group_key_text=group.key_text if group else "",
        base_group_id=group.base_group_id if group else "",
        client_id=client_id,
        mid=mid,
        dup=dup,
        digest=digest,
        # Held down: `new` until level 0 is due, as its state says (not a quiet start).
        quiet_start=start is not None and start.quiet and not behaviour.hold_down,
        next_delay_ms=start.next_delay_ms if start is not None else None,
        partial=partial_match(alert, settings.dedup.attributes),
        silences=quiet.silences,
        inhibitors=quiet.inhibitors,
        inhibit_source=quiet.source,
        hold_down_ms=behaviour.hold_down * 1000,
        auto_resolve_ms=behaviour.auto_resolve * 1000,
        latch=behaviour.latch,
        flap_reopens=behaviour.flap_reopens,
        flap_window_ms=behaviour.flap_window * 1000,
    )


class Ingest:
    def __init__(
        self,
        *,
        settings: AlertSettings,
        limits: Limits,
        topics: Topics,
        store: AlertStore,
        publisher: StatePublisher,
        commands: CommandHandler,
        client_id: str,
        other_topics: Callable[[Inbound], Awaitable[bool]] | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.topics = topics
        self.store = store
        self.publisher = publisher
        self.commands = commands
        self.client_id = client_id
        self.other_topics = other_topics
        self.batch_observers: list[Callable[[int, float], None]] = []
        # Set by the escalation engine's setup: which priorities start quiet.
        self.start_plan: Mapping[Priority, Start] = {}
        # Set by noise control's setup: which silences are on for an alert.
        self.silences_for: SilencesFor | None = None

    async def handle(self, batch: Sequence[Inbound], ack: Callable[[Inbound], None]) -> None:
        """Process a batch in arrival order: alerts stored INGEST_CHUNK per script call,
        up to CHUNKS_IN_FLIGHT calls ahead of the one being published; a command once
        every alert before it is stored and published.

        Raises redis errors untouched: the caller retries the messages not acknowledged.
        """
        async with self.store.ingest_stream() as stream:
            flow = _Flow(stream, ack, self._publish_result, self._observe)
            for message in batch:
                if self.topics.is_input(message.topic):
                    started = time.perf_counter()
                    prepared = await self._prepare(message)
                    if prepared is None:
                        ack(message)
                    else:
                        await flow.add(prepared, started)
                    continue
                await flow.finish()
                await self._command(message)
                ack(message)
            await flow.finish()

    def _observe(self, count: int, seconds: float) -> None:
        for observe in self.batch_observers:
            observe(count, seconds)

    async def _command(self, message: Inbound) -> None:
        try:
            command = self.topics.parse_command(message.topic)
            if command is not None:
                await self.commands.handle(command, message.topic, message.payload)
            elif self.other_topics is not None:
                await self.other_topics(message)
        except RedisError as err:
            if not is_script_bug(err):
                raise  # Redis is down or refuses writes for now: retried, not dropped
            # Retried, it would fail the same way and hold up every message behind it.
            _LOGGER.exception("a script failed on the message on %s", message.topic)
            await self.publisher.error(
                f"internal error, the command was not carried out: {err}",
                message.topic,
                message.payload,
            )

    async def _prepare(self, message: Inbound) -> Prepared | None:
        if message.retain:
            # A retained alert would be replayed to us on every resubscribe.
            await self.publisher.error(
                "retained alerts are not accepted (publish without retain)",
                message.topic,
                message.payload,
            )
            return None
        try:
            source = self.topics.source_from_input(message.topic)
            alert, attributes_json = parse(message.payload, source, self.limits)
        except (Rejected, ValueError) as err:
            await self.publisher.error(str(err), message.topic, message.payload)
            return None
        request = store_request(
            alert,
            attributes_json,
            self.settings,
            self.start_plan,
            client_id=f"{self.client_id}.{message.session}",
            mid=message.mid if message.qos > 0 else 0,
            dup=message.dup,
            digest=hashlib.blake2b(
                message.topic.encode() + b"\x00" + message.payload, digest_size=12
            ).hexdigest(),
            silences_for=self.silences_for,
        )
        return Prepared(message, request)

    async def _publish_result(self, prepared: Prepared, result: IngestResult) -> None:
        if result.outcome == "failed":
            # A bug, not bad input (validation passed): say so loudly, and go on with the
            # alerts behind it instead of retrying this one forever.
            _LOGGER.error(
                "ingest.lua failed on a message from %s: %s", prepared.message.topic, result.reason
            )
            await self.publisher.error(
                f"internal error, the alert was not stored: {result.reason}",
                prepared.message.topic,
                prepared.message.payload,
            )
            return
        if result.outcome == "no_open_alert":
            partial = prepared.request.partial
            await self.publisher.error(
                "status resolved, but no open alert has this fingerprint"
                if partial is None
                else "status resolved, but no open alert has "
                + ", ".join(f"{name}={value!r}" for name, value in partial.fields + partial.attrs),
                prepared.message.topic,
                prepared.message.payload,
            )
            return
        alert: AlertRecord | None = result.alert
        if alert is None:
            return
        for one, group in ((alert, result.group), *result.also):
            _log_outcome(result.outcome, one)
            await self.publisher.alert(one, result.events)
            if group is not None:
                await self.publisher.group(group)


def _log_outcome(outcome: str, alert: AlertRecord) -> None:
    """A line per alert opened or closed (repeats are counted, not logged: a flapping
    sensor would flood the log)."""
    if outcome in ("created", "reopened"):
        _LOGGER.info(
            "alert %s %s: %s %s from %s (%s)",
            alert.id,
            outcome,
            alert.priority.value,
            alert.type,
            alert.source,
            alert.message[:80],
        )
    elif outcome == "resolved":
        _LOGGER.info("alert %s resolved by %s (a resolved message)", alert.id, alert.resolved_by)


class _Flow:
    """Alerts on their way through one IngestStream: sent a chunk at a time, and
    acknowledged and published in order as Redis answers."""

    def __init__(
        self,
        stream: IngestStream[tuple[list[Prepared], float]],  # the chunk, when it began
        ack: Callable[[Inbound], None],
        publish: Callable[[Prepared, IngestResult], Awaitable[None]],
        observe: Callable[[int, float], None],
    ) -> None:
        self._stream = stream
        self._ack = ack
        self._publish = publish
        self._observe = observe  # (alerts, seconds from the first one's validation on)
        self._chunk: list[Prepared] = []
        self._chunk_started = 0.0

    async def add(self, prepared: Prepared, started: float) -> None:
        if not self._chunk:
            self._chunk_started = started
        self._chunk.append(prepared)
        if len(self._chunk) >= INGEST_CHUNK:
            await self._send()
            if self._stream.pending >= CHUNKS_IN_FLIGHT:
                await self._receive()

    async def finish(self) -> None:
        """Everything added so far stored, acknowledged and published."""
        if self._chunk:
            await self._send()
        while self._stream.pending:
            await self._receive()

    async def _send(self) -> None:
        chunk, self._chunk = self._chunk, []
        await self._stream.send([p.request for p in chunk], (chunk, self._chunk_started))

    async def _receive(self) -> None:
        (chunk, started), results = await self._stream.receive()
        # Committed: from here on a crash loses nothing (the broker's redelivery is
        # recognised, and a restart republishes every retained topic).
        for prepared in chunk:
            self._ack(prepared.message)
        # In order, one after the other: a publish does not wait for its PUBACK, so a
        # task per alert (gather) would only add overhead.
        for prepared, result in zip(chunk, results, strict=True):
            await self._publish(prepared, result)
        self._observe(len(chunk), time.perf_counter() - started)
