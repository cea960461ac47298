"""The gate between escalation and paging: what is quiet is not paged.

The escalation engine hands each claimed batch to `admit()` before it notifies anyone
(the one seam in escalation/engine.py). An alert a silence or an inhibition is on, or
one that a silence or an open source matches that ingest did not know of yet (another
replica changed it a moment ago), is taken out of the batch and marked in the same Lua
step (noise_mark.lua), so that the silence's end (the source's resolve) restarts its
escalation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homealert_mqtt.clock import Clock
from homealert_mqtt.escalation.plan import Target
from homealert_mqtt.models import AlertRecord
from homealert_mqtt.noise.matchers import alert_fields
from homealert_mqtt.noise.quiet_hours import QuietPlan
from homealert_mqtt.noise.store import InhibitCache, Mark, Marked, SilenceCache, SilenceStore
from homealert_mqtt.store.escalation_store import Flush, TimerMember

Announce = Callable[[Sequence[Marked]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Quiet:
    """What keeps a new alert quiet: the silences on for it and the open alerts
    inhibiting it; and whether it is itself the source of an inhibit rule."""

    silences: tuple[str, ...] = ()
    inhibitors: tuple[str, ...] = ()
    source: bool = False


NOT_QUIET = Quiet()


class NoiseGate:
    def __init__(
        self,
        cache: SilenceCache,
        inhibit: InhibitCache,
        store: SilenceStore,
        announce: Announce,
        clock: Clock,
        *,
        quiet_hours: QuietPlan | None = None,
    ) -> None:
        self.quiet_hours = quiet_hours
        self.cache = cache
        self.inhibit = inhibit
        self.store = store
        self.announce = announce
        self.clock = clock

    def quiet_for(self, fields: Mapping[str, Any]) -> Quiet:
        """For ingest: what keeps an alert about to be stored quiet (ingest.lua keeps the
        silences still on and the sources still open when it runs)."""
        index = self.cache.index
        silences = tuple(index.matching(fields, self.clock())) if len(index) else ()
        if not self.inhibit.enabled:
            return Quiet(silences) if silences else NOT_QUIET
        state = self.inhibit.state
        inhibitors = tuple(state.inhibitors(str(fields["id"]), fields))
        source = state.rules.is_source(fields)
        if not (silences or inhibitors or source):
            return NOT_QUIET
        return Quiet(silences, inhibitors, source)

    def quiet_because(self, alert: AlertRecord, now: int) -> list[tuple[str, str]]:
        """(kind, id) of what is on the alert or should be: ("s", silence id) and
        ("i", source alert id)."""
        fields = alert_fields(alert)
        silences = set(self.cache.index.matching(fields, now)) | set(alert.silenced_by)
        found = [("s", s) for s in sorted(silences)]
        if self.inhibit.enabled or alert.inhibited_by:
            sources = set(self.inhibit.state.inhibitors(alert.id, fields))
            found += [("i", s) for s in sorted(sources | set(alert.inhibited_by))]
        return found

    async def refresh(self) -> None:
        await self.cache.refresh()
        await self.inhibit.refresh()

    async def admit(self, flushes: list[Flush]) -> list[Flush]:
        """The batches without their quiet alerts (batches left empty are dropped)."""
        if not flushes:
            return flushes
        await self.refresh()
        now = self.clock()
        marks = [
            Mark(alert.id, by, flush.key, str(member), kind)
            for flush in flushes
            for member, alert in flush.steps
            for kind, by in self.quiet_because(alert, now)
        ]
        if not marks:
            return flushes
        marked = await self.store.mark(marks)
        await self.announce(marked)
        quiet = {m.alert.id for m in marked if m.quiet}
        kept = []
        for flush in flushes:
            steps = tuple(step for step in flush.steps if step[1].id not in quiet)
            if steps:
                kept.append(dataclasses.replace(flush, steps=steps))
        return kept

    async def hold_for_quiet_hours(
        self, target: Target, flush: Flush
    ) -> tuple[tuple[TimerMember, AlertRecord], ...]:
        """The batch's steps `target` gets now; the others are held for its quiet hours
        (a digest when they end)."""
        plan = self.quiet_hours
        if not plan:
            return flush.steps
        now = self.clock()
        held: dict[int, list[TimerMember]] = {}
        kept = []
        for member, alert in flush.steps:
            until = plan.held_until(target, alert, flush.level, now)
            if until is None:
                kept.append((member, alert))
            else:
                held.setdefault(until, []).append(member)
        for until, members in held.items():
            await self.store.hold_until(target.channel, target.recipient, members, until)
        return tuple(kept)

    async def pageable(self, alerts: Mapping[str, AlertRecord]) -> dict[str, AlertRecord]:
        """Of alerts held back by a rate limit, those nothing keeps quiet now."""
        if not alerts:
            return dict(alerts)
        await self.refresh()
        now = self.clock()
        return {i: a for i, a in alerts.items() if not self.quiet_because(a, now)}
