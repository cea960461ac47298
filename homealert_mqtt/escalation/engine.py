"""The escalation loop: turns due timers into batches, batches into messages, and moves
alerts on. Every replica runs it; Redis decides who does what (see store/lua).

A Redis blip is not a failed batch: every Redis call of the loop and of a batch in
progress is retried where it stands (transient.retry_transient), so a batch claimed
before Redis went away is sent, and settled, as soon as it is back. The lease brings a
batch back only when the replica that claimed it died. How many batches a replica works
on at once is bounded by `alerts.escalation.concurrency`, the same budget that sizes the
Redis pool: a storm waits in Redis for a free slot (where another replica can take it),
it never runs the pool dry.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from homealert_mqtt.clock import Clock
from homealert_mqtt.config.settings import EscalationSettings
from homealert_mqtt.escalation.delivery import Delivery
from homealert_mqtt.escalation.plan import Target, next_step, targets
from homealert_mqtt.models import AlertRecord, State
from homealert_mqtt.noise.gate import NoiseGate
from homealert_mqtt.notify.base import Message
from homealert_mqtt.notify.templates import NotificationKind, TemplateRenderer
from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.store.escalation_store import EscalationStore, Flush, TimerMember, due
from homealert_mqtt.transient import Outage, retry_transient

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

POLL_SECONDS = 0.1  # timers fire within this (plus the work) of their due time
CHUNK = 16  # batches claimed per round trip


class EscalationEngine:
    def __init__(
        self,
        *,
        settings: EscalationSettings,
        recipients: dict[str, dict[str, tuple[str, ...]]],
        digest_interval: int,
        store: EscalationStore,
        delivery: Delivery,
        renderer: TemplateRenderer,
        publisher: StatePublisher,
        clock: Clock,
        outage: Outage | None = None,
        client_id: str = "",
    ) -> None:
        self.settings = settings
        self.client_id = client_id  # this replica's; "" takes nothing over at start
        self.recipients = recipients
        self.digest_ms = digest_interval * 1000
        self.store = store
        self.delivery = delivery
        self.renderer = renderer
        self.publisher = publisher
        self.clock = clock
        self.outage = outage or delivery.outage
        self.concurrency = settings.concurrency
        self._busy: set[str] = set()
        self._claim_token = ""  # the last claim_flush call's, for Redis to forget
        self.gate: NoiseGate | None = None  # noise control (noise/setup.py): who is quiet

    async def run(self) -> None:
        # Polled, not woken per alert: a burst costs a few passes, and a pass with
        # nothing due is one round trip. Level 0 of a new alert is due at once, so it
        # goes out within POLL_SECONDS.
        # A Redis blip never ends the loop: each of its calls is retried where it stands
        # (_redis), and the work in flight goes on meanwhile.
        await self._take_over()
        async with asyncio.TaskGroup() as tasks:
            while True:
                first, now = await self._pass(tasks)
                await self._sleep(first, now)

    async def _take_over(self) -> None:
        """What this replica's previous run claimed and never finished (it was killed)
        is due again now, not after its lease: a restart costs a page its restart time."""
        if not self.client_id:
            return
        incarnation = self.delivery.incarnation
        remember = self.delivery.leases.claim_ms * 2
        released = await self._redis(
            lambda: self.store.bury(self.client_id, incarnation, remember), "take-over"
        )
        if released:
            _LOGGER.info("took back %d notification batches of this replica's last run", released)

    async def _pass(self, tasks: asyncio.TaskGroup) -> tuple[int | None, int]:
        # Each call is retried in place; a claim is retried with the same token, so a
        # reply lost with a connection hands back what it claimed instead of leaving
        # it claimed by nobody until its lease.
        heads = await self._redis(self.store.queue_heads)
        now = self.clock()
        lease_ms = self.delivery.leases.claim_ms  # see delivery.Leases
        if due(heads.timers, now):
            await self._redis(lambda: self.store.schedule_due(self.digest_ms))
        if due(heads.timers, now) or due(heads.flushes, now):
            await self._claim_flushes(tasks, lease_ms)
        if due(heads.notices, now):
            token = self.delivery.token()
            notices = await self._redis(lambda: self.store.claim_notices(lease_ms, token=token))
            for alert_id, epoch in notices:
                self._spawn(tasks, f"notice:{alert_id}", self._notice(alert_id, epoch))
        if due(heads.deferred, now):
            token = self.delivery.token()
            held = await self._redis(lambda: self.store.claim_deferred(lease_ms, token=token))
            for channel, recipient in held:
                self._spawn(
                    tasks,
                    f"deferred:{channel}:{self.delivery.shown(channel, recipient)}",
                    self._deferred(channel, recipient),
                )
        return heads.first(), now

    @property
    def free_slots(self) -> int:
        return max(0, self.concurrency - len(self._busy))

    async def _claim_flushes(self, tasks: asyncio.TaskGroup, lease_ms: int) -> None:
        # In small chunks, yielding between them: a burst's worth of batches claimed and
        # completed at once would hold Redis and the event loop for milliseconds, and
        # alerts arriving meanwhile would wait (the paced benchmark's p99). Never more
        # than there are free slots: what this replica cannot start now stays due in
        # Redis, for another replica or for this one's next pass.
        while (limit := min(CHUNK, self.free_slots)) > 0:
            token, previous = secrets.token_hex(8), self._claim_token
            claim = partial(
                self.store.claim_flushes,
                lease_ms,
                limit=limit,
                token=token,
                previous=previous,
                owner=self.delivery.incarnation,
            )
            claimed = await self._redis(claim)
            self._claim_token = token
            admitted = claimed
            if self.gate is not None:
                admitted = await self._redis(partial(self.gate.admit, claimed))
            quiet = []
            for flush in admitted:
                if self._targets(flush):
                    self._spawn(tasks, f"flush:{flush.key}", self._flush(flush))
                else:
                    quiet.append(flush)
            if quiet:
                await self._complete_quiet(quiet)
            if len(claimed) < limit:
                return
            await asyncio.sleep(0)

    def _targets(self, flush: Flush) -> list[Target]:
        """Who the batch goes to on channels that are enabled (a disabled channel warned
        once at start; its recipients are skipped)."""
        alerts = [alert for _, alert in flush.steps]
        found = targets(self.settings, self.recipients, alerts, flush.level)
        return [t for t in found if t.channel in self.delivery.channels]

    async def _complete_quiet(self, flushes: list[Flush]) -> None:
        """Batches nobody is notified of (no enabled channel at that level) still move
        their alerts on; all of them in one round trip."""
        now = self.clock()
        batches = [
            (flush, [(m, next_step(self.settings, a, m, now)) for m, a in flush.steps])
            for flush in flushes
        ]
        done = await self._redis(lambda: self.store.complete_flushes(batches, self.digest_ms))
        for moved in done:
            for alert, rule in moved:
                await self.publisher.alert(alert, ["escalated"] if rule == "T2" else [])

    def _spawn(self, tasks: asyncio.TaskGroup, name: str, work: Coroutine[Any, Any, None]) -> None:
        if name in self._busy:
            work.close()  # still being worked on here (its lease has not run out)
            return
        self._busy.add(name)

        async def guarded() -> None:
            try:
                await work
            except Exception:
                # Not a Redis blip (those are retried where they happen): a bug. The
                # lease brings the work back; one bad batch must not stop the pager.
                _LOGGER.exception("escalation work %s failed; it is retried after its lease", name)
            finally:
                self._busy.discard(name)

        tasks.create_task(guarded())

    async def _redis(self, call: Callable[[], Awaitable[T]], where: str = "escalation") -> T:
        return await retry_transient(call, self.outage, where=where)

    async def _sleep(self, first_due: int | None, now: int) -> None:
        wait = POLL_SECONDS
        if first_due is not None and first_due > now:
            wait = min(POLL_SECONDS, (first_due - now) / 1000)
        await asyncio.sleep(wait)

    # -- a batch of one group at one level
    async def _flush(self, flush: Flush) -> None:
        group = None
        if (group_id := flush.group_id) is not None:
            record = await self._redis(lambda: self.publisher.store.get_group(group_id))
            group = record.to_public() if record else None
        batch = _Batch(flush, group, self.renderer)
        results = await asyncio.gather(
            *(self._deliver_target(batch, target) for target in self._targets(flush))
        )
        now = self.clock()
        steps = [
            (member, next_step(self.settings, alert, member, now)) for member, alert in flush.steps
        ]
        moved = await self._redis(lambda: self.store.complete_flush(flush, steps, self.digest_ms))
        await self._publish(moved, batch, [r for r in results if r is not None])

    async def _deliver_target(self, batch: _Batch, target: Target) -> _Result | None:
        flush = batch.flush
        steps = flush.steps
        if self.gate is not None:  # quiet hours: the rest is held for a digest
            steps = await self._redis(partial(self.gate.hold_for_quiet_hours, target, flush))
            if not steps:
                return None
        keys = [
            self.store.delivery_key(member, target.channel, target.recipient) for member, _ in steps
        ]
        ids = [alert.id for _, alert in steps]

        async def defer(chosen: Sequence[str]) -> None:
            limit = self.delivery.rate_limits[target.channel]
            members = [batch.members[i] for i in chosen]
            await self._redis(
                lambda: self.store.defer(target.channel, target.recipient, members, limit.period)
            )

        outcome, concerned = await self.delivery.deliver(
            target.channel, target.recipient, keys, ids, batch.render, flush.level, defer=defer
        )
        if not concerned:
            return None
        return _Result(target, outcome.status, tuple(concerned), outcome.error)

    async def _publish(
        self, moved: list[tuple[AlertRecord, str]], batch: _Batch, results: list[_Result]
    ) -> None:
        for alert, rule in moved:
            await self.publisher.alert(alert, ["escalated"] if rule == "T2" else [])
        level = batch.flush.level
        for result in results:
            channel = result.target.channel
            for alert_id in result.alert_ids:
                alert = batch.alerts[alert_id]
                if result.status == "sent":
                    await self.publisher.event("notified", alert, level=level, channel=channel)
                elif result.status == "failed":
                    _LOGGER.warning(
                        "notifying %s of %s by %s failed: %s",
                        self.delivery.shown(channel, result.target.recipient),
                        alert_id,
                        channel,
                        result.error,
                    )
                    await self.publisher.event(
                        "notify_failed", alert, level=level, channel=channel, error=result.error
                    )

    # -- "it is resolved" to whoever was paged
    async def _notice(self, alert_id: str, epoch: int) -> None:
        alert = await self._redis(lambda: self.publisher.store.get_alert(alert_id))
        if (
            self.settings.notify_resolved
            and alert is not None
            and alert.epoch == epoch
            and alert.state is State.RESOLVED
        ):
            message = self.renderer.render(NotificationKind.RESOLVED, [alert.to_public()])
            for channel, recipient in await self._redis(lambda: self.store.paged(alert_id)):
                key = self.store.notice_key(alert_id, epoch, channel, recipient)
                await self.delivery.deliver(
                    channel, recipient, [key], [alert_id], lambda _ids: message, -1
                )
        await self._redis(lambda: self.store.notice_done(alert_id, epoch))

    # -- what a rate limit held back, as one digest once the window reopens
    async def _deferred(self, channel: str, recipient: str) -> None:
        held = await self._redis(lambda: self.store.peek_deferred(channel, recipient))
        found = await self._redis(lambda: self.publisher.store.get_alerts([a for a, _ in held]))
        by_id = {alert.id: alert for alert in found}
        alerts: dict[str, AlertRecord] = {}
        for alert_id, epoch in held:
            alert = by_id.get(alert_id)
            if alert is not None and alert.epoch == epoch and alert.state in _PAGEABLE:
                alerts[alert.id] = alert
        if (gate := self.gate) is not None:
            alerts = await self._redis(lambda: gate.pageable(alerts))
        if alerts:
            keys = self.store.digest_keys(channel, recipient, held, list(alerts))

            def render(ids: Sequence[str]) -> Message:
                return self.renderer.render(
                    NotificationKind.DIGEST, [alerts[i].to_public() for i in ids]
                )

            await self.delivery.deliver(channel, recipient, keys, list(alerts), render, 0)
        await self._redis(lambda: self.store.deferred_done(channel, recipient, held))


_PAGEABLE = frozenset({State.NEW, State.ACTIVE, State.ESCALATED})


@dataclass(frozen=True, slots=True)
class _Result:
    target: Target
    status: str
    alert_ids: tuple[str, ...]
    error: str | None


class _Batch:
    """A claimed flush with what rendering its messages needs."""

    def __init__(
        self, flush: Flush, group: dict[str, Any] | None, renderer: TemplateRenderer
    ) -> None:
        self.flush = flush
        self.group = group
        self.renderer = renderer
        self.alerts = {alert.id: alert for _, alert in flush.steps}
        self.members: dict[str, TimerMember] = {alert.id: m for m, alert in flush.steps}
        # One rendering (every block) per set of alerts: a batch's recipients on every
        # channel mostly get the same alerts, and rendering was a fifth of a page's CPU.
        self._rendered: dict[tuple[str, ...], Message] = {}

    def render(self, ids: Sequence[str]) -> Message:
        key = tuple(ids)
        message = self._rendered.get(key)
        if message is None:
            chosen = [self.alerts[i].to_public() for i in ids]
            kind = NotificationKind.ALERT if len(chosen) == 1 else NotificationKind.DIGEST
            message = self.renderer.render(kind, chosen, group=self.group, level=self.flush.level)
            self._rendered[key] = message
        return message
