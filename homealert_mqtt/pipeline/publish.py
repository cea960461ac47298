"""The last step: state out to MQTT (retained alert, group and summary; events; errors).

Every retained payload is a snapshot read from Redis, so publishing twice is harmless and
`resync()` can rebuild every topic after a restart or a broker outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homealert_mqtt.models import AlertRecord, GroupRecord, iso
from homealert_mqtt.mqtt.backoff import Backoff
from homealert_mqtt.pipeline.jsontext import compact
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.topics import Topics
from homealert_mqtt.transient import RETRY_CAP, Outage, is_transient

_LOGGER = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], Awaitable[None]]
ERROR_PAYLOAD_BYTES = 256
SUMMARY_DEBOUNCE = 0.2  # seconds: a burst of alerts makes one summary, not thousands
# Seconds between summaries while alerts are open and nothing changes: the ages in its
# `open_alerts` stay current to the minute for a dashboard.
SUMMARY_REFRESH = 60.0


class StateListener:
    """Told about every published change (Home Assistant discovery, metrics, ...).

    Subclass and override what you need; every hook is a no-op here. A listener must be
    quick: it runs on the pipeline's path.
    """

    async def alert_changed(self, alert: AlertRecord, events: Sequence[str]) -> None:
        """After the alert's retained state was published (events may be empty)."""

    async def alert_removed(self, alert_id: str) -> None:
        """After the alert's retained state was cleared (its retention ended)."""

    async def rejected(self, reason: str) -> None:
        """After an input was rejected."""

    async def notify_failed(self, channel: str, error: str) -> None:
        """After a notification failed (its `notify_failed` event went out)."""

    async def resynced(self, alert_ids: Sequence[str]) -> None:
        """After every retained topic was republished from Redis (on each connect)."""


def dumps(data: Any) -> bytes:
    return compact(data).encode()


class StatePublisher:
    def __init__(
        self,
        topics: Topics,
        store: AlertStore,
        publish: Publish,
        clock: Callable[[], int],
        outage: Outage | None = None,
    ) -> None:
        self.topics = topics
        self.store = store
        self._publish = publish
        self._clock = clock
        self.outage = outage or Outage("Redis")
        self.listeners: list[StateListener] = []
        self._summary_due = asyncio.Event()
        self.summary_refresh = SUMMARY_REFRESH
        self._open_listed = False  # the last summary listed open alerts
        # While a resync runs: the topics published since it began. Its snapshot of them
        # is older than what was published, so it must not overwrite them.
        self._fresh: set[str] | None = None
        self._revs: dict[str, int] = {}  # alert id -> rev of the state last published

    def _newer(self, alert: AlertRecord) -> bool:
        """False for a snapshot older than the one last published for this alert.

        The pipeline, commands and the escalation engine each publish the snapshot their
        script returned, and may get to the publish in the other order than they got to
        Redis; the later state must stay on the retained topic. Checked and recorded
        right before the publish is handed to the client (no await in between).
        """
        if alert.rev < self._revs.get(alert.id, 0):
            return False
        self._revs[alert.id] = alert.rev
        return True

    def _mark_fresh(self, topic: str) -> None:
        if self._fresh is not None:
            self._fresh.add(topic)

    async def alert(self, alert: AlertRecord, events: Sequence[str] = ()) -> None:
        current = self._newer(alert)
        if current:
            topic = self.topics.alert(alert.id)
            self._mark_fresh(topic)
            await self._publish(topic, dumps(alert.to_public()), 1, True)
        for name in events:
            await self.event(name, alert)
        if current:
            for listener in self.listeners:
                await listener.alert_changed(alert, events)
        self._summary_due.set()

    async def group(self, group: GroupRecord) -> None:
        topic = self.topics.group(group.id)
        self._mark_fresh(topic)
        await self._publish(topic, dumps(group.to_public()), 1, True)

    async def retained(self, topic: str, payload: bytes) -> None:
        """Another part's retained topic (a silence's state), or its clearing with b""."""
        self._mark_fresh(topic)
        await self._publish(topic, payload, 1, True)

    async def event(self, name: str, alert: AlertRecord | None, **extra: Any) -> None:
        body: dict[str, Any]
        if alert is None:
            body = {"event": name, "at": iso(self._clock())}
        else:
            body = {
                "event": name,
                "at": iso(self._clock()),
                "id": alert.id,
                "priority": alert.priority.value,
                "state": alert.state.value,
                "source": alert.source,
                "type": alert.type,
                "group_id": alert.group_id,
                "message": alert.message,
                "escalation_level": alert.escalation_level,
            }
        if extra:
            body.update(extra)
        await self._publish(self.topics.event, dumps(body), 1, False)
        if name == "notify_failed":
            for listener in self.listeners:
                await listener.notify_failed(str(extra.get("channel")), str(extra.get("error")))

    async def error(self, reason: str, topic: str, payload: bytes) -> None:
        """Rejected input: `<base>/error`, a `rejected` event, and the log."""
        excerpt = payload[:ERROR_PAYLOAD_BYTES].decode("utf-8", errors="replace")
        _LOGGER.warning("rejected message on %s: %s", topic[:200], reason)
        await self._publish(
            self.topics.error,
            dumps({"error": reason, "topic": topic, "payload": excerpt}),
            1,
            False,
        )
        await self.event("rejected", None, topic=topic, error=reason)
        for listener in self.listeners:
            await listener.rejected(reason)

    async def response(self, request_id: str, answer: dict[str, Any]) -> None:
        """A command's answer on `<base>/response/<request_id>` (not retained: it is for
        the one waiting for it)."""
        await self._publish(self.topics.response(request_id), dumps(answer), 1, False)

    async def removed(self, alert_ids: Sequence[str], group_ids: Sequence[str]) -> None:
        """Clear retained topics of removed alerts and groups, then forget the clear marks."""
        for alert_id in alert_ids:
            self._mark_fresh(self.topics.alert(alert_id))
            self._revs.pop(alert_id, None)
            await self._publish(self.topics.alert(alert_id), b"", 1, True)
            for listener in self.listeners:
                await listener.alert_removed(alert_id)
        for group_id in group_ids:
            self._mark_fresh(self.topics.group(group_id))
            await self._publish(self.topics.group(group_id), b"", 1, True)
        await self.store.clears_done(
            [f"alert:{i}" for i in alert_ids] + [f"group:{g}" for g in group_ids]
        )
        if alert_ids:
            self._summary_due.set()

    async def summary(self) -> None:
        summary = await self.store.summary()
        self._open_listed = bool(summary.open_alerts)
        await self._publish(self.topics.summary, dumps(summary.to_public()), 1, True)

    async def run_summary(self) -> None:
        """Publish the summary after changes, at most every SUMMARY_DEBOUNCE seconds, and
        every `summary_refresh` seconds while it lists open alerts (their ages move).

        While Redis is away the summary waits with it (backing off, without a line per
        try); a bug in it is logged once per change, not once per debounce."""
        backoff = Backoff(initial=SUMMARY_DEBOUNCE, cap=RETRY_CAP)
        while True:
            refresh = self.summary_refresh if self._open_listed else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(refresh):
                    await self._summary_due.wait()
            await asyncio.sleep(SUMMARY_DEBOUNCE)
            self._summary_due.clear()
            try:
                await self.summary()
            except Exception as err:
                self._summary_due.set()
                if is_transient(err):
                    self.outage.failed(err, "summary")
                else:
                    _LOGGER.exception("summary publish failed; retrying")
                await asyncio.sleep(backoff.next_delay())
            else:
                self.outage.ok()
                backoff.reset()

    async def resync(self) -> None:
        """Republish every retained topic from Redis (after a restart or reconnect).

        The pipeline keeps publishing meanwhile; a topic it published after this began
        is skipped (checked just before the publish is handed to the client, so the
        broker never gets an older snapshot after a newer state).
        """
        fresh: set[str] = set()
        self._fresh = fresh
        try:
            ids = await self.store.stored_ids()
            for start in range(0, len(ids), 500):
                for alert in await self.store.get_alerts(ids[start : start + 500]):
                    topic = self.topics.alert(alert.id)
                    if topic in fresh or not self._newer(alert):
                        continue
                    await self._publish(topic, dumps(alert.to_public()), 1, True)
                    for listener in self.listeners:
                        await listener.alert_changed(alert, ())
            for group_id in await self.store.group_ids():
                group = await self.store.get_group(group_id)
                topic = self.topics.group(group_id)
                if group is not None and topic not in fresh:
                    await self._publish(topic, dumps(group.to_public()), 1, True)
        finally:
            if self._fresh is fresh:
                self._fresh = None
        pending = await self.store.pending_clears()
        await self.removed(
            [p.split(":", 1)[1] for p in pending if p.startswith("alert:")],
            [p.split(":", 1)[1] for p in pending if p.startswith("group:")],
        )
        await self.summary()
        for listener in self.listeners:
            await listener.resynced(ids)
        _LOGGER.info("published the state of %d alerts", len(ids))
