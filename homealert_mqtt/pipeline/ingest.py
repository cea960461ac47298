"""The chain for alerts and commands coming in over MQTT.

    validate -> fingerprint -> prioritise -> store (ingest.lua: dedup, group, retention)
             -> publish (alert, group, events) -> PUBACK

A batch of alerts is stored in one pipelined round trip. A message is acknowledged to
the broker only after Redis has committed it; a message that fails validation is
answered on `<base>/error` and acknowledged, so it never blocks those behind it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from homealert_mqtt.config.settings import AlertSettings
from homealert_mqtt.escalation.plan import Start
from homealert_mqtt.models import AlertRecord, IncomingAlert, Priority
from homealert_mqtt.mqtt.link import Inbound
from homealert_mqtt.pipeline.commands import CommandHandler
from homealert_mqtt.pipeline.fingerprint import group_identity, identify
from homealert_mqtt.pipeline.prioritise import prioritise
from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.pipeline.validate import Limits, Rejected, parse
from homealert_mqtt.store.alert_store import AlertStore, IngestRequest, IngestResult
from homealert_mqtt.topics import Topics

_LOGGER = logging.getLogger(__name__)


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
) -> IngestRequest:
    """What ingest.lua needs to store a validated alert: its identity, group, priority
    and first escalation step, and the MQTT message's redelivery check (`client_id`
    empty: none)."""
    identity = identify(alert, settings.dedup.attributes)
    grouping = settings.grouping
    group = group_identity(alert, grouping.attributes) if grouping.enabled else None
    priority = prioritise(alert, settings.priorities, settings.default_priority)
    start = start_plan.get(priority)
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
        quiet_start=start is not None and start.quiet,
        next_delay_ms=start.next_delay_ms if start is not None else None,
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

    async def handle(self, batch: Sequence[Inbound], ack: Callable[[Inbound], None]) -> None:
        """Process a batch in arrival order: runs of alerts pipelined, commands one by one.

        Raises redis errors untouched: the caller retries the same (unacknowledged) batch.
        """
        run: list[Prepared] = []
        for message in batch:
            if self.topics.is_input(message.topic):
                prepared = await self._prepare(message)
                if prepared is None:
                    ack(message)
                else:
                    run.append(prepared)
                continue
            if run:
                await self._store_and_publish(run, ack)
                run = []
            command = self.topics.parse_command(message.topic)
            if command is not None:
                await self.commands.handle(command, message.topic, message.payload)
            elif self.other_topics is not None:
                await self.other_topics(message)
            ack(message)
        if run:
            await self._store_and_publish(run, ack)

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
        )
        return Prepared(message, request)

    async def _store_and_publish(self, run: list[Prepared], ack: Callable[[Inbound], None]) -> None:
        started = time.perf_counter()
        done = 0
        chunks = self.store.ingest_chunks([p.request for p in run])
        async with contextlib.aclosing(chunks):
            # Each chunk is published while Redis works on the next one.
            async for results in chunks:
                part = run[done : done + len(results)]
                done += len(results)
                # Committed: from here on a crash loses nothing (the broker's redelivery
                # is recognised, and a restart republishes every retained topic).
                for prepared in part:
                    ack(prepared.message)
                # In order, one after the other: a publish does not wait for its PUBACK,
                # so a task per alert (gather) would only add overhead.
                for prepared, result in zip(part, results, strict=True):
                    await self._publish_result(prepared, result)
        elapsed = time.perf_counter() - started
        for observe in self.batch_observers:
            observe(len(run), elapsed)

    async def _publish_result(self, prepared: Prepared, result: IngestResult) -> None:
        if result.outcome == "no_open_alert":
            await self.publisher.error(
                "status resolved, but no open alert has this fingerprint",
                prepared.message.topic,
                prepared.message.payload,
            )
            return
        alert: AlertRecord | None = result.alert
        if alert is None:
            return
        await self.publisher.alert(alert, result.events)
        if result.group is not None:
            await self.publisher.group(result.group)
