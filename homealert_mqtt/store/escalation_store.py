"""Escalation state in Redis: timers, notification batches, delivery keys, rate windows."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from homealert_mqtt.clock import Clock
from homealert_mqtt.models import AlertRecord
from homealert_mqtt.store.alert_store import AlertStore, alert_from_json
from homealert_mqtt.store.keys import Keys
from homealert_mqtt.store.scripts import as_str

ATTEMPTS_KEPT = 100
DELIVERY_KEPT_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TimerMember:
    """ "<id>|<epoch>|<level>|<round>": one alert's pending escalation step."""

    alert_id: str
    epoch: int
    level: int
    round: int

    @classmethod
    def parse(cls, text: str) -> TimerMember:
        alert_id, epoch, level, rnd = text.split("|")
        return cls(alert_id, int(epoch), int(level), int(rnd))

    def __str__(self) -> str:
        return f"{self.alert_id}|{self.epoch}|{self.level}|{self.round}"


@dataclass(frozen=True, slots=True)
class Flush:
    """A batch of alerts of one group due at one level: one message per recipient."""

    key: str  # "<group>|<level>.<round>"
    due: int
    steps: tuple[tuple[TimerMember, AlertRecord], ...]

    @property
    def group_id(self) -> str | None:
        group = self.key.split("|", 1)[0]
        return None if group.startswith("~") else group

    @property
    def level(self) -> int:
        return int(self.key.split("|", 1)[1].split(".")[0])

    @property
    def round(self) -> int:
        return int(self.key.split("|", 1)[1].split(".")[1])


@dataclass(frozen=True, slots=True)
class NextStep:
    level: int
    round: int
    due: int


@dataclass(frozen=True, slots=True)
class QueueHeads:
    timers: int | None
    flushes: int | None
    notices: int | None
    deferred: int | None

    def first(self) -> int | None:
        found = [t for t in (self.timers, self.flushes, self.notices, self.deferred) if t]
        return min(found) if found else None


def due(head: int | None, now: int) -> bool:
    return head is not None and head <= now


def recipient_hash(recipient: str) -> str:
    return hashlib.blake2b(recipient.encode(), digest_size=8).hexdigest()


class EscalationStore:
    def __init__(self, alerts: AlertStore, clock: Clock) -> None:
        self.alerts = alerts
        self.redis: Redis = alerts.redis
        self.keys: Keys = alerts.keys
        self.scripts = alerts.scripts
        self.clock = clock

    async def schedule_due(self, digest_ms: int, limit: int = 1000) -> int:
        moved = await self.scripts.schedule(
            keys=[self.keys.prefix], args=[self.clock(), digest_ms, limit]
        )
        return int(moved)

    async def claim_flushes(
        self,
        lease_ms: int,
        limit: int = 100,
        *,
        token: str = "",
        previous: str = "",
        owner: str = "",
    ) -> list[Flush]:
        """Due batches, each leased to the caller (`owner`, its incarnation). The same
        `token` again returns the same batches (a retry after a lost reply); `previous`,
        the caller's last token, lets Redis forget that reply."""
        raw = await self.scripts.claim_flush(
            keys=[self.keys.prefix],
            args=[self.clock(), lease_ms, limit, token or secrets.token_hex(8), previous, owner],
        )
        flushes = []
        for batch in json.loads(raw):  # `{}` when empty, as every list from the scripts
            steps = []
            for member, fields in zip(batch["members"], batch["alerts"], strict=True):
                alert = alert_from_json(fields)
                if alert is not None:
                    steps.append((TimerMember.parse(member), alert))
            flushes.append(Flush(batch["key"], int(float(batch["due"])), tuple(steps)))
        return flushes

    async def complete_flush(
        self,
        flush: Flush,
        next_steps: Sequence[tuple[TimerMember, NextStep | None]],
        digest_ms: int,
    ) -> list[tuple[AlertRecord, str]]:
        return (await self.complete_flushes([(flush, next_steps)], digest_ms))[0]

    async def complete_flushes(
        self,
        batches: Sequence[tuple[Flush, Sequence[tuple[TimerMember, NextStep | None]]]],
        digest_ms: int,
    ) -> list[list[tuple[AlertRecord, str]]]:
        """complete_flush.lua for each batch, pipelined: one round trip for them all."""
        now = self.clock()
        pipe = self.redis.pipeline(transaction=False)
        for flush, next_steps in batches:
            args: list[Any] = [now, self.alerts.lua_settings, flush.key, digest_ms, len(next_steps)]
            for member, step in next_steps:
                if step is None:
                    args += [str(member), "", "", ""]
                else:
                    args += [str(member), step.level, step.round, step.due]
            await self.scripts.complete_flush(keys=[self.keys.prefix], args=args, client=pipe)
        results = []
        for raw in await pipe.execute():
            moved = []
            for step in json.loads(raw):
                alert = alert_from_json(step["alert"])
                if alert is not None:
                    moved.append((alert, step["rule"]))
            results.append(moved)
        return results

    async def bury(self, client_id: str, incarnation: str, remember_ms: int) -> int:
        """This replica (`client_id`) starts as `incarnation`: what its previous run
        claimed is handed back at once (bury.lua). Returns the batches handed back."""
        released = await self.scripts.bury(
            keys=[self.keys.prefix], args=[client_id, incarnation, self.clock(), remember_ms]
        )
        return int(released)

    async def queue_heads(self) -> QueueHeads:
        """When the first entry of each escalation queue is due: one round trip that
        tells the loop what to do now and how long it may sleep."""
        pipe = self.redis.pipeline(transaction=False)
        for key in (
            self.keys.timers,
            self.keys.flushes,
            self.keys.notices,
            self.keys.deferred_queue,
        ):
            pipe.zrange(key, 0, 0, withscores=True)
        heads = [int(rows[0][1]) if rows else None for rows in await pipe.execute()]
        return QueueHeads(*heads)

    # -- delivery keys: one per (alert, level, round, channel, recipient)
    def delivery_key(self, member: TimerMember, channel: str, recipient: str) -> str:
        return self.keys.delivery(
            member.alert_id,
            str(member.epoch),
            f"{member.level}.{member.round}",
            channel,
            recipient_hash(recipient),
        )

    async def reserve(self, keys: Sequence[str], token: str, lease_ms: int) -> list[bool]:
        """Take each key for the sender `token` for `lease_ms`: True where it is this
        sender's (taken now, or by an earlier call of the same sender whose reply was
        lost), so the call is safe to repeat."""
        if not keys:
            return []
        owned = await self.scripts.reserve(keys=[self.keys.prefix, *keys], args=[token, lease_ms])
        return [bool(r) for r in owned]

    async def settle(
        self,
        keys: Sequence[str],
        token: str,
        alert_ids: Sequence[str],
        attempt: dict[str, Any],
        *,
        paged: tuple[str, str] | None = None,
    ) -> int:
        """Record a send's outcome on its keys, its attempt on each alert and, when it
        was sent, who was paged: once per key however often it is called (settle.lua)."""
        if not keys:
            return 0
        member = f"{paged[0]}\x1f{paged[1]}" if paged is not None else ""
        args: list[Any] = [
            token,
            attempt["outcome"],
            DELIVERY_KEPT_MS,
            ATTEMPTS_KEPT,
            json.dumps(attempt, ensure_ascii=False),
            member,
            *alert_ids,
        ]
        settled = await self.scripts.settle(keys=[self.keys.prefix, *keys], args=args)
        return int(settled)

    async def attempts(self, alert_id: str) -> list[dict[str, Any]]:
        rows = await self.redis.lrange(self.keys.attempts(alert_id), 0, -1)
        return [json.loads(r) for r in rows]

    async def paged(self, alert_id: str) -> list[tuple[str, str]]:
        rows = await self.redis.smembers(self.keys.paged(alert_id))
        pairs = (as_str(r).split("\x1f", 1) for r in rows)
        return sorted((p[0], p[1]) for p in pairs if len(p) == 2)

    # -- resolved notices
    async def _claim_due(self, queue: str, lease_ms: int, limit: int, token: str) -> list[str]:
        """Due members of `queue`, each claimed by a lease key (reserve.lua) so that one
        replica handles it; a claim of a process that died expires with its lease. The
        same `token` again finds its own claims (a retry after a lost reply)."""
        due = [
            as_str(m)
            for m in await self.redis.zrangebyscore(queue, "-inf", self.clock(), start=0, num=limit)
        ]
        keys = [self.keys.delivery("claim", queue, text) for text in due]
        owned = await self.reserve(keys, token, lease_ms)
        return [text for text, ok in zip(due, owned, strict=True) if ok]

    async def _release(self, queue: str, member: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(queue, member)
        pipe.delete(self.keys.delivery("claim", queue, member))
        await pipe.execute()

    async def claim_notices(
        self, lease_ms: int, limit: int = 50, *, token: str = ""
    ) -> list[tuple[str, int]]:
        claimed = []
        token = token or secrets.token_hex(8)
        for text in await self._claim_due(self.keys.notices, lease_ms, limit, token):
            alert_id, epoch = text.split("|")
            claimed.append((alert_id, int(epoch)))
        return claimed

    async def notice_done(self, alert_id: str, epoch: int) -> None:
        await self._release(self.keys.notices, f"{alert_id}|{epoch}")

    # -- rate limits: a fixed window per (channel, recipient)
    async def take_token(self, channel: str, recipient: str, limit: int, period_s: int) -> bool:
        now = self.clock()
        window = now // (period_s * 1000)
        key = self.keys.rate(channel, recipient_hash(recipient), window)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.pexpire(key, period_s * 1000 * 2)
        count, _ = await pipe.execute()
        return int(count) <= limit

    async def defer(
        self, channel: str, recipient: str, members: Sequence[TimerMember], period_s: int
    ) -> None:
        """Hold alerts back for (channel, recipient) until its window reopens."""
        now = self.clock()
        reopen = (now // (period_s * 1000) + 1) * period_s * 1000
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(
            self.keys.deferred(channel, recipient_hash(recipient)),
            *(f"{m.alert_id}|{m.epoch}" for m in members),
        )
        pipe.zadd(self.keys.deferred_queue, {f"{channel}\x1f{recipient}": reopen}, nx=True)
        await pipe.execute()

    async def claim_deferred(
        self, lease_ms: int, limit: int = 50, *, token: str = ""
    ) -> list[tuple[str, str]]:
        claimed = []
        token = token or secrets.token_hex(8)
        for text in await self._claim_due(self.keys.deferred_queue, lease_ms, limit, token):
            channel, recipient = text.split("\x1f", 1)
            claimed.append((channel, recipient))
        return claimed

    async def peek_deferred(self, channel: str, recipient: str) -> list[tuple[str, int]]:
        members = await self.redis.smembers(self.keys.deferred(channel, recipient_hash(recipient)))
        out = []
        for m in members:
            alert_id, epoch = as_str(m).split("|")
            out.append((alert_id, int(epoch)))
        return sorted(out)

    def digest_keys(
        self,
        channel: str,
        recipient: str,
        held: Sequence[tuple[str, int]],
        alert_ids: Sequence[str],
    ) -> list[str]:
        """Delivery keys of one held-back digest: the same held set gives the same keys,
        so a digest re-run after a crash is not sent twice."""
        batch = hashlib.blake2b(repr(sorted(held)).encode(), digest_size=8).hexdigest()
        rh = recipient_hash(recipient)
        return [self.keys.delivery("digest", channel, rh, batch, a) for a in alert_ids]

    def notice_key(self, alert_id: str, epoch: int, channel: str, recipient: str) -> str:
        return self.keys.delivery(
            alert_id, str(epoch), "resolved", channel, recipient_hash(recipient)
        )

    async def deferred_done(
        self, channel: str, recipient: str, held: Sequence[tuple[str, int]]
    ) -> None:
        key = self.keys.deferred(channel, recipient_hash(recipient))
        if held:
            await self.redis.srem(key, *(f"{a}|{e}" for a, e in held))
        await self._release(self.keys.deferred_queue, f"{channel}\x1f{recipient}")
        if await self.redis.scard(key):
            # Held back while this digest went out: keep the next one scheduled.
            await self.redis.zadd(
                self.keys.deferred_queue, {f"{channel}\x1f{recipient}": self.clock()}, nx=True
            )
