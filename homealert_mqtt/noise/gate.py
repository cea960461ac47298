"""The gate between escalation and paging: what is quiet is not paged.

The escalation engine hands each claimed batch to `admit()` before it notifies anyone
(the one seam in escalation/engine.py). An alert a silence is on, or one a silence
matches that ingest did not know of yet (another replica created it a moment ago), is
taken out of the batch and marked silenced in the same Lua step (silence_mark.lua), so
that the silence's end restarts its escalation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from homealert_mqtt.clock import Clock
from homealert_mqtt.models import AlertRecord
from homealert_mqtt.noise.store import Mark, Marked, SilenceCache, SilenceStore
from homealert_mqtt.store.escalation_store import Flush

Announce = Callable[[Sequence[Marked]], Awaitable[None]]


def alert_fields(alert: AlertRecord) -> dict[str, Any]:
    """What matchers read of a stored alert."""
    return {
        "id": alert.id,
        "source": alert.source,
        "type": alert.type,
        "severity": alert.severity,
        "priority": alert.priority.value,
        "group_id": alert.group_id,
        "attributes": alert.attributes,
    }


class NoiseGate:
    def __init__(
        self, cache: SilenceCache, store: SilenceStore, announce: Announce, clock: Clock
    ) -> None:
        self.cache = cache
        self.store = store
        self.announce = announce
        self.clock = clock

    def silences_for(self, fields: Mapping[str, Any]) -> tuple[str, ...]:
        """For ingest: the silences on for an alert about to be stored (ingest.lua keeps
        those still on when it runs)."""
        index = self.cache.index
        if not len(index):
            return ()
        return tuple(index.matching(fields, self.clock()))

    def quiet_because(self, alert: AlertRecord, now: int) -> list[str]:
        found = set(self.cache.index.matching(alert_fields(alert), now))
        return sorted(found | set(alert.silenced_by))

    async def admit(self, flushes: list[Flush]) -> list[Flush]:
        """The batches without their quiet alerts (batches left empty are dropped)."""
        if not flushes:
            return flushes
        await self.cache.refresh()
        now = self.clock()
        marks = [
            Mark(alert.id, silence_id, flush.key, str(member))
            for flush in flushes
            for member, alert in flush.steps
            for silence_id in self.quiet_because(alert, now)
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

    async def pageable(self, alerts: Mapping[str, AlertRecord]) -> dict[str, AlertRecord]:
        """Of alerts held back by a rate limit, those no silence is on now."""
        if not alerts:
            return dict(alerts)
        await self.cache.refresh()
        now = self.clock()
        return {i: a for i, a in alerts.items() if not self.quiet_because(a, now)}
