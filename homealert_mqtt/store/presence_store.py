"""Presence records and their deadlines in Redis (store/lua/presence.lua)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from homealert_mqtt.clock import Clock
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.store.scripts import as_str


class Kind(StrEnum):
    DEVICE = "d"
    HEARTBEAT = "h"


class Event(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    BEAT = "beat"
    WATCH = "watch"  # a configured heartbeat: due from now unless already known


@dataclass(frozen=True, slots=True)
class Details:
    """What a raised alert needs, kept on the record (the config may change meanwhile)."""

    name: str
    source: str
    severity: str
    topic: str


@dataclass(frozen=True, slots=True)
class Claim:
    member: str
    action: str  # raise | resolve
    gen: int
    kind: Kind
    details: Details
    since: int | None  # ms: offline since (devices)
    last_seen: int | None


@dataclass(frozen=True, slots=True)
class Entry:
    """One record as the retained `<base>/presence` shows it."""

    kind: Kind
    name: str
    raised: bool
    last_seen: int | None
    since: int | None


def member(kind: Kind, name: str) -> str:
    return f"{kind.value}:{name}"


class PresenceStore:
    def __init__(self, alerts: AlertStore, clock: Clock) -> None:
        self.redis = alerts.redis
        self.keys = alerts.keys
        self.clock = clock
        self._script = alerts.scripts.presence

    async def observe(self, kind: Kind, event: Event, delay_ms: int, details: Details) -> bool:
        """Record what was seen; True when the published view changed."""
        body = json.dumps(
            {
                "name": details.name,
                "source": details.source,
                "severity": details.severity,
                "topic": details.topic,
            }
        )
        changed = await self._script(
            keys=[self.keys.prefix],
            args=[
                "observe",
                self.clock(),
                member(kind, details.name),
                event.value,
                delay_ms,
                body,
            ],
        )
        return bool(changed)

    async def claim(self, lease_ms: int, limit: int = 100) -> list[Claim]:
        return (await self.claim_due(lease_ms, limit))[0]

    async def claim_due(self, lease_ms: int, limit: int = 100) -> tuple[list[Claim], int | None]:
        """What is due, claimed for `lease_ms`; and when the next record is due (None:
        nothing is), in the same round trip."""
        raw = await self._script(
            keys=[self.keys.prefix], args=["claim", self.clock(), lease_ms, limit]
        )
        answer = json.loads(as_str(raw))
        claims = [_claim(item) for item in answer["claimed"]]
        return claims, int(answer["next"]) or None

    async def done(self, claim: Claim) -> bool:
        return bool(
            await self._script(
                keys=[self.keys.prefix], args=["done", self.clock(), claim.member, claim.gen]
            )
        )

    async def forget(self, kind: Kind, name: str) -> bool:
        return bool(
            await self._script(
                keys=[self.keys.prefix], args=["forget", self.clock(), member(kind, name)]
            )
        )

    async def entries(self) -> list[Entry]:
        raw = await self.redis.hgetall(self.keys.presence)
        found = []
        for key, body in raw.items():
            record = json.loads(body)
            kind = Kind(as_str(key).split(":", 1)[0])
            found.append(
                Entry(
                    kind,
                    str(record.get("name", "")),
                    record.get("raised") == 1,
                    _ms(record.get("last_seen")),
                    _ms(record.get("since")) if record.get("state") == "offline" else None,
                )
            )
        return found


def _ms(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _claim(item: dict[str, Any]) -> Claim:
    record = item["record"]
    return Claim(
        member=item["member"],
        action=item["action"],
        gen=int(item["gen"]),
        kind=Kind(item["member"].split(":", 1)[0]),
        details=Details(
            str(record["name"]),
            str(record["source"]),
            str(record["severity"]),
            str(record["topic"]),
        ),
        since=_ms(record.get("since")),
        last_seen=_ms(record.get("last_seen")),
    )
