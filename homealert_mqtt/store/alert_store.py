"""The typed face of the Redis state: every read and write the service makes goes here."""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from homealert_mqtt.config.settings import AlertSettings
from homealert_mqtt.models import AlertRecord, GroupRecord, OpenAlert, Priority, State, Summary
from homealert_mqtt.store.keys import Keys
from homealert_mqtt.store.scripts import Scripts, as_str

SUMMARY_NEWEST = 50
# The summary's `open_alerts`: the most urgent SUMMARY_LISTED among the newest
# SUMMARY_DESCRIBED open alerts (bounded work for the script in an alert storm: at 200,
# reading them took two HMGETs per alert at 500 alerts/s and raised the paced p99 from
# 1.6 to 2.4 ms; a house rarely has 50 open alerts).
SUMMARY_LISTED = 20
SUMMARY_DESCRIBED = 50
# Alerts per ingest.lua call. Each call holds Redis for ~80 us per alert (other clients,
# the escalation engine and other replicas, wait meanwhile), and pays a fixed cost once.
INGEST_CHUNK = 64

Tag = TypeVar("Tag")  # what an IngestStream's caller keeps with each call


# A resolve that leaves out fingerprint fields looks at this many of the newest open
# alerts and resolves at most RESOLVE_MATCHING_MAX of them (ingest.lua, resolve_partial).
RESOLVE_MATCHING_SCAN = 1000
RESOLVE_MATCHING_MAX = 100


@dataclass(frozen=True, slots=True)
class PartialMatch:
    """What a resolve that leaves out fingerprint fields must match in an open alert:
    stored hash fields (name, value) and `attributes` keys (name, JSON value)."""

    fields: tuple[tuple[str, str], ...]
    attrs: tuple[tuple[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": [list(pair) for pair in self.fields],
            "attrs": [list(pair) for pair in self.attrs],
            "scan": RESOLVE_MATCHING_SCAN,
            "max": RESOLVE_MATCHING_MAX,
        }


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """Everything ingest.lua needs for one alert (see its header for the meaning)."""

    fingerprint: str
    base_id: str
    status: str
    source: str
    type: str
    severity: str
    priority: str
    message: str
    attributes_json: str
    timestamp_ms: int | None
    group_key_hash: str
    group_key_text: str
    base_group_id: str
    client_id: str
    mid: int
    dup: bool
    digest: str
    # Level 0 reaches nobody: start `active`, with level 1's timer (see escalation/plan.py).
    quiet_start: bool = False
    next_delay_ms: int | None = None
    # A resolve without every fingerprint field: resolve the open alerts matching this.
    partial: PartialMatch | None = None
    silences: tuple[str, ...] = ()  # silences the service found on (noise/)
    inhibitors: tuple[str, ...] = ()  # open alerts the service found inhibiting it
    inhibit_source: bool = False  # it matches an inhibit rule's source matchers
    hold_down_ms: int = 0  # alerts.types: level 0 this long after opening (noise/types.py)
    auto_resolve_ms: int = 0  # resolves itself when not repeated for this long; 0: never
    latch: bool = False  # a device's resolve only clears it
    flap_reopens: int = 0  # re-openings within flap_window_ms that make it flap; 0: never
    flap_window_ms: int = 0


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: str
    alert: AlertRecord | None
    group: GroupRecord | None
    events: tuple[str, ...]
    reason: str = ""  # why, when the outcome is "failed"
    # A partial resolve that resolved several alerts: the others, each with its group.
    also: tuple[tuple[AlertRecord, GroupRecord | None], ...] = ()


@dataclass(frozen=True, slots=True)
class CommandResult:
    outcome: str  # acknowledged | resolved | unchanged | unknown | final
    alert: AlertRecord | None
    group: GroupRecord | None


@dataclass(frozen=True, slots=True)
class ExpireResult:
    expired: tuple[str, ...]
    changed_groups: tuple[GroupRecord, ...]
    removed_groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    source: str
    id: str
    event: str
    type: str
    priority: str
    at: int


# The scripts reply with cjson.encode: an alert as HGETALL answers, [field, value, ...]
# (every value a string), a group as group_state builds it (_lib.lua), false for none; and
# cjson writes every empty table as `{}`, so a list that may be empty is only ever
# iterated here.
def group_from_json(raw: Any) -> GroupRecord | None:
    if not raw:
        return None
    highest, last_digest = raw["highest"], raw["last_digest"]
    return GroupRecord(
        id=raw["id"],
        key=raw["key"],
        alert_ids=tuple(raw["members"]),
        highest_priority=Priority(highest) if highest else None,
        state=raw["state"],
        created_at=int(raw["created"]),
        updated_at=int(raw["updated"]),
        last_digest_at=int(last_digest) if last_digest else None,
    )


def alert_from_json(raw: Any) -> AlertRecord | None:
    if not raw:
        return None
    pairs = iter(raw)
    return AlertRecord.from_redis(dict(zip(pairs, pairs, strict=True)))


def _also(raw: Any) -> tuple[tuple[AlertRecord, GroupRecord | None], ...]:
    if not raw:
        return ()
    found = []
    for item in raw:
        alert = alert_from_json(item["alert"])
        if alert is not None:
            found.append((alert, group_from_json(item["group"])))
    return tuple(found)


def _ingest_arg(req: IngestRequest) -> str:
    """The request as ingest.lua's ARGV[3]: one JSON array, in the order of its header."""
    return json.dumps(
        (
            req.fingerprint,
            req.base_id,
            req.status,
            req.source,
            req.type,
            req.severity,
            req.priority,
            req.message,
            req.attributes_json,
            "" if req.timestamp_ms is None else str(req.timestamp_ms),
            req.group_key_hash,
            req.group_key_text,
            req.base_group_id,
            req.client_id,
            str(req.mid),
            req.dup,
            req.digest,
            req.quiet_start,
            req.next_delay_ms,
            None if req.partial is None else req.partial.to_json(),
            req.silences,
            req.inhibitors,
            req.inhibit_source,
            req.hold_down_ms,
            req.auto_resolve_ms,
            req.latch,
            req.flap_reopens,
            req.flap_window_ms,
        )
    )


class IngestStream(Generic[Tag]):
    """ingest.lua calls in flight on one connection: `send` a chunk of requests (one
    call, one atomic step per alert) with a tag of the caller's, `receive` the tag and
    the answers in the order sent.

    The caller publishes one chunk while Redis works on the next ones. A chunk received
    is committed; one that raised, and every chunk still in flight then, may or may not
    be (the caller retries them as redeliveries).
    """

    def __init__(self, store: AlertStore, connection: Any) -> None:
        self._store = store
        self._connection = connection
        self._sent: collections.deque[tuple[Sequence[IngestRequest], Tag]] = collections.deque()
        self._reloaded = False

    @property
    def pending(self) -> int:
        """Calls sent and not yet answered."""
        return len(self._sent)

    async def send(self, requests: Sequence[IngestRequest], tag: Tag) -> None:
        connection = self._connection
        await connection.send_packed_command(
            connection.pack_command(*self._store._ingest_call(requests))  # noqa: SLF001
        )
        self._sent.append((requests, tag))

    async def receive(self) -> tuple[Tag, list[IngestResult]]:
        try:
            reply = await self._connection.read_response()
        except NoScriptError:
            await self._reload()
            return await self.receive()
        _requests, tag = self._sent.popleft()
        return tag, [
            IngestResult(
                outcome=raw["outcome"],
                alert=alert_from_json(raw["alert"]),
                group=group_from_json(raw["group"]),
                events=tuple(raw["events"]),
                reason=raw.get("reason", ""),
                also=_also(raw.get("also")),
            )
            for raw in json.loads(reply)
        ]

    async def _reload(self) -> None:
        """Redis restarted or flushed its scripts: the call answered NOSCRIPT did not run.
        Load the script and send again what is in flight, the later calls marked as
        redelivered: another replica may have loaded the script before they arrived."""
        if self._reloaded:
            raise NoScriptError("ingest.lua vanished again after it was loaded")
        self._reloaded = True
        await self._connection.disconnect()  # the answers still to come are dropped
        await self._store.redis.script_load(self._store.scripts.ingest.script)
        sent = list(self._sent)
        self._sent.clear()
        for i, (requests, tag) in enumerate(sent):
            await self.send(requests if i == 0 else [replace(r, dup=True) for r in requests], tag)


class AlertStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: AlertSettings,
        clock: Callable[[], int],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.settings = settings
        self.scripts = Scripts.register(redis)
        # The scripts' ARGV[2], in the order parse_settings (_lib.lua) reads it: retention
        # per state in State's order first.
        self.lua_settings = " ".join(
            str(v)
            for v in (
                *(settings.retention[s] * 1000 for s in State),
                int(settings.dedup.enabled),
                settings.dedup.window * 1000,
                settings.grouping.window * 1000,
                settings.grouping.max_group_size,
                settings.history_max_entries,
                settings.history_max_age * 1000,
            )
        )
        self._lua_settings_bytes = self.lua_settings.encode()
        self._ingest_head = (self.scripts.ingest.sha.encode(), b"1", keys.prefix.encode())

    # -- writes
    async def ingest_many(self, requests: Sequence[IngestRequest]) -> list[IngestResult]:
        """Run ingest.lua over the requests in order, INGEST_CHUNK alerts per call, all
        calls in flight at once (see IngestStream)."""
        results: list[IngestResult] = []
        async with self.ingest_stream() as stream:
            for i in range(0, len(requests), INGEST_CHUNK):
                await stream.send(requests[i : i + INGEST_CHUNK], None)
            while stream.pending:
                _tag, answers = await stream.receive()
                results.extend(answers)
        return results

    @contextlib.asynccontextmanager
    async def ingest_stream(self) -> AsyncIterator[IngestStream[Any]]:
        """ingest.lua calls pipelined on one pooled connection (see IngestStream)."""
        pool = self.redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        stream: IngestStream[Any] = IngestStream(self, connection)
        try:
            yield stream
        finally:
            if stream.pending:
                # Answers left unread (an error, or the caller stopped): the connection
                # must not go back to the pool with them.
                await connection.disconnect()
            await pool.release(connection)

    def _ingest_call(self, requests: Sequence[IngestRequest]) -> tuple[Any, ...]:
        # EVALSHA straight on the connection (the AsyncScript wrapper would add a SCRIPT
        # EXISTS round trip before every call: NOSCRIPT is handled by IngestStream), with
        # the arguments every call shares encoded once, not by redis-py for each.
        return (
            "EVALSHA",
            *self._ingest_head,
            b"%d" % self.clock(),
            self._lua_settings_bytes,
            f"[{','.join(map(_ingest_arg, requests))}]",
        )

    async def command(
        self, action: str, alert_id: str, by: str | None, note: str | None
    ) -> CommandResult:
        raw = json.loads(
            await self.scripts.command(
                keys=[self.keys.prefix],
                args=[self.clock(), self.lua_settings, action, alert_id, by or "", note or ""],
            )
        )
        return CommandResult(
            raw["outcome"], alert_from_json(raw["alert"]), group_from_json(raw["group"])
        )

    async def expire_due(self, limit: int = 200) -> ExpireResult:
        raw = json.loads(
            await self.scripts.expire(
                keys=[self.keys.prefix], args=[self.clock(), self.lua_settings, limit]
            )
        )
        return ExpireResult(
            expired=tuple(raw["expired"]),
            changed_groups=tuple(g for g in map(group_from_json, raw["changed"]) if g),
            removed_groups=tuple(raw["removed"]),
        )

    async def pending_clears(self) -> list[str]:
        return sorted(as_str(m) for m in await self.redis.smembers(self.keys.clear_pending))

    async def clears_done(self, items: Sequence[str]) -> None:
        if items:
            await self.redis.srem(self.keys.clear_pending, *items)

    # -- reads
    async def summary(self) -> Summary:
        now = self.clock()
        (
            open_,
            acked,
            escalated,
            by,
            active_by,
            newest,
            described,
            silenced,
        ) = await self.scripts.summary(
            keys=[self.keys.prefix], args=[SUMMARY_NEWEST, SUMMARY_DESCRIBED]
        )
        names = [p.value for p in Priority]
        listed = sorted(
            (_open_alert([as_str(f) for f in fields]) for fields in described),
            # most urgent first; among equals the newest (the script's order)
            key=lambda alert: alert.priority.value,
        )
        return Summary(
            active=int(open_) - int(acked),
            acknowledged=int(acked),
            escalated=int(escalated),
            by_priority=dict(zip(names, (int(n) for n in by), strict=True)),
            active_by_priority=dict(zip(names, (int(n) for n in active_by), strict=True)),
            alerts=tuple(as_str(i) for i in newest),
            open_alerts=tuple(listed[:SUMMARY_LISTED]),
            at=now,
            silenced=int(silenced),
        )

    async def get_alert(self, alert_id: str) -> AlertRecord | None:
        raw = await self.redis.hgetall(self.keys.alert(alert_id))
        if not raw:
            return None
        return AlertRecord.from_redis({as_str(k): as_str(v) for k, v in raw.items()})

    async def get_alerts(self, alert_ids: Sequence[str]) -> list[AlertRecord]:
        pipe = self.redis.pipeline(transaction=False)
        for alert_id in alert_ids:
            pipe.hgetall(self.keys.alert(alert_id))
        found = []
        for raw in await pipe.execute():
            if raw:
                found.append(AlertRecord.from_redis({as_str(k): as_str(v) for k, v in raw.items()}))
        return found

    async def open_ids(self, newest_first: bool = True) -> list[str]:
        ids = await self.redis.zrange(self.keys.open, 0, -1, desc=newest_first)
        return [as_str(i) for i in ids]

    async def stored_ids(self) -> list[str]:
        """Every stored alert, open or resolved (they share the retention index)."""
        return [as_str(i) for i in await self.redis.zrange(self.keys.retention, 0, -1)]

    async def group_ids(self) -> list[str]:
        return [as_str(i) for i in await self.redis.zrange(self.keys.groups, 0, -1)]

    async def get_group(self, group_id: str) -> GroupRecord | None:
        # Computed in Lua so that it reads the same as the scripts that change groups.
        return group_from_json(
            json.loads(await self.scripts.group_state(keys=[self.keys.prefix], args=[group_id]))
        )

    async def history(self, source: str | None, limit: int = 100) -> list[HistoryEntry]:
        if source is None:
            sources = sorted(
                as_str(s) for s in await self.redis.smembers(self.keys.history_sources)
            )
        else:
            sources = [source]
        entries: list[HistoryEntry] = []
        for src in sources:
            for _, fields in await self.redis.xrevrange(self.keys.history(src), count=limit) or []:
                f = {as_str(k): as_str(v) for k, v in (fields or {}).items()}
                entries.append(
                    HistoryEntry(
                        source=src,
                        id=f["id"],
                        event=f["event"],
                        type=f["type"],
                        priority=f["priority"],
                        at=int(f["at"]),
                    )
                )
        entries.sort(key=lambda e: e.at, reverse=True)
        return entries[:limit]


def _open_alert(fields: list[str]) -> OpenAlert:
    """From summary.lua's {id, priority, state, source, type, message, first_seen}."""
    alert_id, priority, state, source, alert_type, message, first_seen = fields
    return OpenAlert(
        id=alert_id,
        priority=Priority(priority),
        state=State(state),
        source=source,
        type=alert_type,
        message=message,
        first_seen=int(first_seen),
    )
