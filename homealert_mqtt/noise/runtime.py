"""Silences in the running service: their timers, their retained topics, and keeping the
alerts' `silenced_by` in step with them.

`run()` is a service task on every replica: it claims due silence starts and ends
(silence_end.lua, atomic, so each is taken once), follows changes other replicas made
(the version counter), and publishes what changed. An ended silence's effect on its
alerts (escalation from level 0) happens inside that claim; what is left for here is
telling MQTT, which a restart redoes (resync, and `silence_clear` for ended silences).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

from homealert_mqtt.clock import Clock
from homealert_mqtt.models import AlertRecord
from homealert_mqtt.noise.acks import AckTimeouts
from homealert_mqtt.noise.auto_resolve import AutoResolve
from homealert_mqtt.noise.flapping import FlapSettle
from homealert_mqtt.noise.matchers import alert_fields
from homealert_mqtt.noise.schedules import Schedule
from homealert_mqtt.noise.silences import Silence
from homealert_mqtt.noise.store import InhibitCache, Mark, Marked, SilenceCache, SilenceStore
from homealert_mqtt.pipeline.publish import StateListener, StatePublisher, dumps
from homealert_mqtt.store.alert_store import AlertStore

_LOGGER = logging.getLogger(__name__)


class _Timer(Protocol):
    async def tick(self) -> int | None:
        """Do what is due; when the next deadline is (ms), if any."""


POLL_SECONDS = 0.1  # as the escalation loop: a silence's end pages within this
OPEN_CHUNK = 500  # open alerts read from Redis at a time when a silence or source is new


class SilenceRuntime(StateListener):
    def __init__(
        self,
        store: SilenceStore,
        cache: SilenceCache,
        alerts: AlertStore,
        publisher: StatePublisher,
        clock: Clock,
        *,
        schedules: Sequence[Schedule] = (),
        zone: ZoneInfo | None = None,
        inhibit: InhibitCache | None = None,
        acks: AckTimeouts | None = None,
        auto_resolve: AutoResolve | None = None,
        flaps: FlapSettle | None = None,
    ) -> None:
        self.auto_resolve = auto_resolve
        self.flaps = flaps
        self._auto_next: int | None = 0  # when auto_resolve.lua has work next (0: ask)
        self._flap_next: int | None = 0
        self.inhibit = inhibit
        self.acks = acks
        self.schedules = tuple(schedules)
        self.zone = zone or ZoneInfo("UTC")
        self.store = store
        self.cache = cache
        self.alerts = alerts
        self.publisher = publisher
        self.clock = clock
        self.silence_listeners: list[SilenceListener] = []
        # Silences set here whose alerts are still to be marked: in one pass over the
        # open alerts for all of them (a script creating a thousand makes a few passes).
        self._to_reconcile: set[str] = set()
        self._wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            await self.open_windows()
            await self.follow_inhibitions()
            if self.acks is not None:
                await self.acks.tick()
            self._auto_next = await self._tick(self.auto_resolve, self._auto_next)
            self._flap_next = await self._tick(self.flaps, self._flap_next)
            timers = await self.store.timers()
            await self.after_timers(timers.started, timers.ended, timers.alerts)
            # Another replica's set or expire: matched from now on, and put on the open
            # alerts (publishing the silence was that replica's part).
            await self.cache.refresh()
            for silence_id in self.cache.take_changed():
                self.reconcile_soon(silence_id)
            if self._to_reconcile:
                chosen, self._to_reconcile = self._to_reconcile, set()
                await self.reconcile(sorted(chosen))
            now = self.clock()
            wait = POLL_SECONDS
            if timers.next_at is not None:
                wait = min(POLL_SECONDS, max(0.0, (timers.next_at - now) / 1000))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def put(self, silence: Silence) -> str:
        """Create or replace a silence: stored, cached, published, and put on the open
        alerts it matches (on the loop's next pass). Returns created or replaced."""
        outcome, version = await self.store.put(silence)
        await self.cache.put(silence, version)
        await self.publish(silence)
        if silence.active(self.clock()):
            self.reconcile_soon(silence.id)
        return outcome

    async def open_windows(self) -> None:
        """The silence of every schedule whose window is on and has none yet (or one of
        an earlier window). Every replica does this; a second put is the same silence."""
        now = self.clock()
        for schedule in self.schedules:
            window = schedule.window_at(now, self.zone)
            if window is None:
                continue
            current = self.cache.index.silences.get(schedule.silence_id)
            if current is not None and current.ends_at == window[1]:
                continue
            if await self.store.window_skipped(schedule.silence_id, window[1]):
                continue  # expired early: off until this window's end
            _LOGGER.info("maintenance window %s is on", schedule.name)
            await self.put(schedule.silence(window))

    async def follow_inhibitions(self) -> None:
        """Release the targets of resolved sources; inhibit the open alerts a new source
        inhibits (those arriving later are inhibited by ingest, or by the gate)."""
        if self.inhibit is None or not self.inhibit.enabled:
            return
        for alert in await self.inhibit.release():
            await self.publisher.alert(alert)
        await self.inhibit.refresh()
        if not self.inhibit.take_new_sources():
            return
        state = self.inhibit.state
        marks = [
            Mark(alert.id, source, kind="i")
            async for alert in self._open_alerts()
            for source in state.inhibitors(alert.id, alert_fields(alert))
            if source not in alert.inhibited_by
        ]
        await self.announce(await self.store.mark(marks))

    async def _open_alerts(self) -> AsyncIterator[AlertRecord]:
        """Every open alert, read from Redis a chunk at a time.

        Read when a silence or an inhibiting source is new, not kept in memory: a copy of
        every open alert grew the service by 39 MiB over the pipeline benchmark's 25,000
        (its memory goal is flat), for the sake of an event a person causes now and then.
        """
        ids = await self.alerts.open_ids()
        for start in range(0, len(ids), OPEN_CHUNK):
            for alert in await self.alerts.get_alerts(ids[start : start + OPEN_CHUNK]):
                if alert.state.is_open:
                    yield alert

    async def _tick(self, timer: _Timer | None, next_at: int | None) -> int | None:
        """Run `timer` (auto-resolve, flap settling) when its next deadline is near;
        returns when to ask again. Asked at least once a second: ingest may add an
        earlier deadline at any time."""
        if timer is None:
            return next_at
        now = self.clock()
        if next_at is not None and next_at > now:
            return next_at
        upcoming = await timer.tick()
        return min(upcoming or now + 1000, now + 1000)

    def reconcile_soon(self, silence_id: str) -> None:
        """Mark the open alerts `silence_id` matches on the loop's next pass (the gate
        keeps them from being paged meanwhile)."""
        self._to_reconcile.add(silence_id)
        self._wake.set()

    async def after_timers(
        self, started: Sequence[str], ended: Sequence[str], marked: Sequence[Marked]
    ) -> None:
        if started or ended:
            await self.cache.refresh()
        await self.announce(marked)
        for silence_id in ended:
            _LOGGER.info("silence %s ended", silence_id)
            await self.clear(silence_id)
        for silence_id in started:
            silence = self.cache.index.silences.get(silence_id)
            if silence is not None:
                _LOGGER.info("silence %s started", silence_id)
                await self.publish(silence)
                self.reconcile_soon(silence_id)

    async def announce(self, marked: Iterable[Marked]) -> None:
        """Publish the alerts a silence change touched, with their events."""
        for item in marked:
            events = [item.event] if item.event else []
            await self.publisher.alert(item.alert, events)

    async def publish(self, silence: Silence) -> None:
        payload = dumps(silence.to_public(self.clock()))
        await self.publisher.retained(self.publisher.topics.silence(silence.id), payload)
        for listener in self.silence_listeners:
            await listener.silence_changed(silence)

    async def clear(self, silence_id: str) -> None:
        await self.publisher.retained(self.publisher.topics.silence(silence_id), b"")
        for listener in self.silence_listeners:
            await listener.silence_removed(silence_id)
        await self.store.cleared(silence_id)

    async def reconcile(self, silence_ids: Sequence[str]) -> None:
        """Put the silences named on every open alert they match, and take a replaced
        one off the alerts it no longer matches.

        One pass over the open alerts in Redis for all the silences named (a script
        creating a thousand makes a few passes), plus the alerts a replaced silence was
        on. An alert that opens meanwhile is marked at ingest, or at the latest by the
        gate before it is paged."""
        now = self.clock()
        index = self.cache.index
        wanted = set(silence_ids)
        put_on: list[Mark] = []
        take_off: list[Mark] = []

        def judge(alert: AlertRecord) -> None:
            matching = set(index.matching(alert_fields(alert), now)) & wanted
            if alert.state.is_open:
                put_on.extend(Mark(alert.id, s) for s in sorted(matching - set(alert.silenced_by)))
            stale = (set(alert.silenced_by) & wanted) - matching
            take_off.extend(Mark(alert.id, s) for s in sorted(stale))

        seen: set[str] = set()
        async for alert in self._open_alerts():
            seen.add(alert.id)
            judge(alert)
        # Taking one off an alert it no longer matches: the alerts it is on.
        members = {m for s in wanted for m in await self.store.members(s)} - seen
        for alert in await self.alerts.get_alerts(sorted(members)):
            judge(alert)
        await self.announce(await self.store.mark(put_on, take_off))

    # -- StateListener: a resync (start, reconnect) republishes every silence
    async def resynced(self, alert_ids: Sequence[str]) -> None:
        await self.cache.refresh()
        # Every stored alert went through alert_changed meanwhile: put the silences on
        # them (one that started or was set while this replica was down, too).
        self._to_reconcile |= set(self.cache.index.silences)
        self._wake.set()
        for silence in list(self.cache.index.silences.values()):
            # Still the current one: an expire or replace since the loop began published
            # a later state, which this older one must not overwrite.
            if self.cache.index.silences.get(silence.id) is silence:
                await self.publish(silence)
        for silence_id in await self.store.pending_clears():
            await self.clear(silence_id)


class SilenceListener:
    """Told when a silence's retained state is published or cleared (Home Assistant)."""

    async def silence_changed(self, silence: Silence) -> None:
        """After `<base>/silence/<id>` was published."""

    async def silence_removed(self, silence_id: str) -> None:
        """After `<base>/silence/<id>` was cleared."""
