"""Silences in Redis (store/lua/silence_*.lua), and the service's cached copy of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from homealert_mqtt.clock import Clock
from homealert_mqtt.models import AlertRecord
from homealert_mqtt.noise.inhibit import Inhibitions, RuleIndex
from homealert_mqtt.noise.matchers import alert_fields
from homealert_mqtt.noise.silences import Silence, SilenceIndex
from homealert_mqtt.store.alert_store import AlertStore, alert_from_json
from homealert_mqtt.store.escalation_store import TimerMember, recipient_hash
from homealert_mqtt.store.scripts import as_str

END_LIMIT = 200  # silence starts and ends claimed per call


@dataclass(frozen=True, slots=True)
class Marked:
    """An alert a noise_mark.lua, silence_end.lua or inhibit_release.lua call changed."""

    alert: AlertRecord
    quiet: bool
    event: str  # silenced | unsilenced | ""


@dataclass(frozen=True, slots=True)
class Mark:
    alert_id: str
    silence_id: str  # or, for kind "i", the id of the source alert inhibiting it
    flush_key: str = ""
    member: str = ""
    kind: str = "s"  # s: silence, i: inhibition


@dataclass(frozen=True, slots=True)
class Timers:
    """What one silence_end.lua call claimed."""

    started: tuple[str, ...]
    ended: tuple[str, ...]
    alerts: tuple[Marked, ...]
    next_at: int | None


class SilenceStore:
    def __init__(self, alerts: AlertStore, clock: Clock) -> None:
        self.alerts = alerts
        self.redis: Redis = alerts.redis
        self.keys = alerts.keys
        self.scripts = alerts.scripts
        self.clock = clock

    async def put(self, silence: Silence) -> tuple[str, int]:
        """Create or replace: ("created" or "replaced", the silences' version now)."""
        raw = silence.to_redis()
        outcome, version = await self.scripts.silence_set(
            keys=[self.keys.prefix],
            args=[
                self.clock(),
                silence.id,
                raw["matchers"],
                silence.starts_at,
                silence.ends_at,
                raw["created_by"],
                raw["comment"],
            ],
        )
        return as_str(outcome), int(version)

    async def timers(self, expire: str = "") -> Timers:
        """Claim the due starts and ends (and end `expire` now, when given)."""
        raw = json.loads(
            await self.scripts.silence_end(
                keys=[self.keys.prefix], args=[self.clock(), END_LIMIT, expire]
            )
        )
        alerts = []
        for item in raw["alerts"]:
            alert = alert_from_json(item["alert"])
            if alert is not None:
                alerts.append(Marked(alert, quiet=False, event=item["event"]))
        return Timers(
            started=tuple(raw["started"]),
            ended=tuple(raw["ended"]),
            alerts=tuple(alerts),
            next_at=int(raw["next"]) if raw["next"] else None,
        )

    async def mark(self, put_on: Sequence[Mark], take_off: Sequence[Mark] = ()) -> list[Marked]:
        if not put_on and not take_off:
            return []
        args: list[str | int] = [self.clock(), len(put_on)]
        for m in put_on:
            args += [m.kind, m.alert_id, m.silence_id, m.flush_key, m.member]
        args.append(len(take_off))
        for m in take_off:
            args += [m.alert_id, m.silence_id]
        raw = json.loads(await self.scripts.noise_mark(keys=[self.keys.prefix], args=args))
        out = []
        for item in raw:
            alert = alert_from_json(item["alert"])
            if alert is not None:
                out.append(Marked(alert, bool(item["quiet"]), item["event"]))
        return out

    async def version(self) -> int:
        return int(await self.redis.get(self.keys.silence_version) or 0)

    async def load(self) -> list[Silence]:
        ids = [as_str(i) for i in await self.redis.zrange(self.keys.silences, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for silence_id in ids:
            pipe.hgetall(self.keys.silence(silence_id))
        found = []
        for raw in await pipe.execute():
            if raw:
                found.append(Silence.from_redis({as_str(k): as_str(v) for k, v in raw.items()}))
        return found

    async def get(self, silence_id: str) -> Silence | None:
        raw = await self.redis.hgetall(self.keys.silence(silence_id))
        if not raw:
            return None
        return Silence.from_redis({as_str(k): as_str(v) for k, v in raw.items()})

    async def members(self, silence_id: str) -> set[str]:
        return {as_str(m) for m in await self.redis.smembers(self.keys.silence_members(silence_id))}

    async def hold_until(
        self, channel: str, recipient: str, members: Sequence[TimerMember], until: int
    ) -> None:
        """Quiet hours: hold alerts back for (channel, recipient) in the escalation
        engine's held-back set (the rate limit's), its digest due at `until` or later
        (GT: a window of the rate limit that reopens sooner must not end the night)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(
            self.keys.deferred(channel, recipient_hash(recipient)),
            *(f"{m.alert_id}|{m.epoch}" for m in members),
        )
        pipe.zadd(self.keys.deferred_queue, {f"{channel}\x1f{recipient}": until}, gt=True)
        await pipe.execute()

    async def window_skipped(self, silence_id: str, ends_at: int) -> bool:
        """Whether the schedule's window ending at `ends_at` was expired early: it stays
        off until its end (silence_end.lua keeps the end of the window it expired)."""
        skipped = await self.redis.get(self.keys.window_skip(silence_id))
        return skipped is not None and int(skipped) == ends_at

    async def pending_clears(self) -> list[str]:
        return sorted(as_str(m) for m in await self.redis.smembers(self.keys.silence_clear))

    async def cleared(self, silence_id: str) -> None:
        await self.redis.srem(self.keys.silence_clear, silence_id)


class SilenceCache:
    """The silences as the service matches them: reloaded whenever Redis's version
    counter moved (another replica, or a timer, changed one)."""

    def __init__(self, store: SilenceStore) -> None:
        self.store = store
        self.index = SilenceIndex()
        self._version = -1
        self.changed: set[str] = set()  # seen by refresh(), for take_changed()

    async def refresh(self) -> list[str]:
        """Reload if anything changed; returns the silences new or changed here."""
        version = await self.store.version()
        if version == self._version:
            return []
        silences = await self.store.load()
        # Read after the load: a change meanwhile shows as a newer version next time.
        self._version = version
        before = self.index.silences
        self.index = SilenceIndex(silences)
        changed = [s.id for s in silences if before.get(s.id) != s]
        self.changed.update(changed)
        return changed

    def take_changed(self) -> set[str]:
        """The silences new or changed since the last call, whoever refreshed."""
        changed, self.changed = self.changed, set()
        return changed

    async def put(self, silence: Silence, version: int) -> None:
        """Our own change (`version` its version): applied here without reading every
        silence back, unless another change came in between."""
        if version != self._version + 1:
            await self.refresh()
            return
        self.index.add(silence)
        self._version = version


class InhibitCache:
    """The open sources of inhibition as the service matches them: reloaded whenever
    Redis's inhibition version moved (a source recorded or released anywhere)."""

    def __init__(self, alerts: AlertStore, rules: RuleIndex) -> None:
        self.alerts = alerts
        self.state = Inhibitions(rules)
        self._version = -1
        self.new_sources: set[str] = set()  # seen by refresh(), for take_new_sources()

    @property
    def enabled(self) -> bool:
        return bool(self.state.rules.rules)

    async def refresh(self) -> set[str]:
        """Reload if anything changed; returns the sources that are new here."""
        if not self.enabled:
            return set()
        redis, keys = self.alerts.redis, self.alerts.keys
        version = int(await redis.get(keys.inhibit_version) or 0)
        if version == self._version:
            return set()
        ids = sorted(as_str(i) for i in await redis.smembers(keys.inhibit_sources))
        sources = {a.id: alert_fields(a) for a in await self.alerts.get_alerts(ids)}
        new = set(sources) - set(self.state.sources)
        self.state.sources = sources
        self._version = version
        self.new_sources |= new
        return new

    def take_new_sources(self) -> set[str]:
        """The sources new since the last call, whoever refreshed."""
        new, self.new_sources = self.new_sources, set()
        return new

    async def release(self) -> list[AlertRecord]:
        """Let the targets of sources no longer open go (inhibit_release.lua)."""
        if not self.enabled:
            return []
        raw = await self.alerts.scripts.inhibit_release(
            keys=[self.alerts.keys.prefix], args=[self.alerts.clock()]
        )
        return [a for a in map(alert_from_json, json.loads(raw)) if a is not None]
