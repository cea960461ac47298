"""The alert's vocabulary: states, priorities, and the typed records that cross module seams."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    NEW = "new"
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    ESCALATED = "escalated"
    RESOLVED = "resolved"

    @property
    def is_open(self) -> bool:
        return self is not State.RESOLVED


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"

    @property
    def rank(self) -> int:
        """1 is the most urgent."""
        return int(self.value[1])


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class Event(StrEnum):
    CREATED = "created"
    DEDUPLICATED = "deduplicated"
    GROUPED = "grouped"
    ESCALATED = "escalated"
    NOTIFIED = "notified"
    NOTIFY_FAILED = "notify_failed"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    EXPIRED = "expired"
    REJECTED = "rejected"
    REOPENED = "reopened"
    ACTIVATED = "activated"
    SILENCED = "silenced"
    UNSILENCED = "unsilenced"
    UNACKNOWLEDGED = "unacknowledged"
    PRIORITY_RAISED = "priority_raised"
    CLEARED = "cleared"


# Every state change the service makes, as (rule id, action, from-states, to-state).
# The Lua scripts hold the same table (store/lua/_lib.lua); tests/store/test_transitions.py
# runs every (action, state) pair through Redis and compares the two.
TRANSITIONS: tuple[tuple[str, str, frozenset[State], State], ...] = (
    ("T1", "activate", frozenset({State.NEW}), State.ACTIVE),
    ("T2", "escalate", frozenset({State.NEW, State.ACTIVE, State.ESCALATED}), State.ESCALATED),
    (
        "T3",
        "ack",
        frozenset({State.NEW, State.ACTIVE, State.ESCALATED}),
        State.ACKNOWLEDGED,
    ),
    (
        "T4",
        "resolve",
        frozenset({State.NEW, State.ACTIVE, State.ACKNOWLEDGED, State.ESCALATED}),
        State.RESOLVED,
    ),
    ("T5", "reopen", frozenset({State.RESOLVED}), State.NEW),
    # An acknowledgement gone stale (ack_timeout) or a more urgent repeat (noise/).
    ("T6", "unack", frozenset({State.ACKNOWLEDGED}), State.ACTIVE),
)


def next_state(action: str, current: State) -> tuple[str, State] | None:
    """The rule and target state for `action` from `current`, or None when not allowed."""
    for rule, name, sources, target in TRANSITIONS:
        if name == action and current in sources:
            return rule, target
    return None


@functools.lru_cache(maxsize=1024)  # a state has ~9 times, mostly the same few
def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC (`2026-11-27T07:30:00.123Z`)."""
    if ms is None:
        return None
    # Integer arithmetic: ms / 1000 as a float is off by a millisecond after 2242.
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_seconds(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=64)
def _iso_seconds(seconds: int) -> str:
    # Most of iso()'s cost; its callers' times fall in the same few seconds, but
    # rarely in the same millisecond while alerts trickle in.
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().removesuffix("+00:00")


@dataclass(frozen=True, slots=True)
class IncomingAlert:
    """An alert that passed validation: what a device said, normalised."""

    source: str
    type: str
    severity: str | None
    explicit_priority: Priority | None
    message: str
    status: str  # "firing" | "resolved"
    dedup_key: str | None
    attributes: dict[str, Any]
    timestamp_ms: int | None
    unknown_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert's state as stored in Redis and published on `<base>/alert/<id>`."""

    id: str
    state: State
    priority: Priority
    severity: str | None
    source: str
    type: str
    message: str
    attributes: dict[str, Any]
    count: int
    first_seen: int
    last_seen: int
    group_id: str | None
    escalation_level: int
    next_escalation_at: int | None
    acknowledged_by: str | None
    acknowledged_at: int | None
    ack_note: str | None
    resolved_at: int | None
    resolved_by: str | None
    fingerprint: str
    epoch: int
    updated_at: int
    timestamp: int | None = None
    opened_at: int | None = None  # creation, or the last re-open: escalation delays count from it
    last_notified_at: int | None = None
    rev: int = 0  # bumped by every script that returns the alert (see _lib.lua, next_rev)
    silenced_by: tuple[str, ...] = ()  # silences on it (noise/): nobody is paged
    inhibited_by: tuple[str, ...] = ()  # open alerts inhibiting it (noise/inhibit.py)
    cleared_at: int | None = None  # a latched alert's last `status: resolved` (noise/types.py)
    flapping: bool = False  # re-opened too often lately: pages nobody (noise/flapping.py)

    @classmethod
    def from_redis(cls, raw: dict[str, Any]) -> AlertRecord:
        """From the alert's Redis hash: HGETALL as a dict, or a script's JSON reply."""

        def opt_int(name: str) -> int | None:
            value = raw.get(name, "")
            return int(value) if value not in ("", None) else None

        def opt_str(name: str) -> str | None:
            value = raw.get(name, "")
            return str(value) if value not in ("", None) else None

        return cls(
            id=raw["id"],
            state=State(raw["state"]),
            priority=Priority(raw["priority"]),
            severity=opt_str("severity"),
            source=raw["source"],
            type=raw["type"],
            message=raw.get("message", ""),
            attributes=json.loads(raw.get("attributes") or "{}"),
            count=int(raw.get("count", 1)),
            first_seen=int(raw["first_seen"]),
            last_seen=int(raw["last_seen"]),
            group_id=opt_str("group_id"),
            escalation_level=int(raw.get("escalation_level", 0)),
            next_escalation_at=opt_int("next_escalation_at"),
            acknowledged_by=opt_str("acknowledged_by"),
            acknowledged_at=opt_int("acknowledged_at"),
            ack_note=opt_str("ack_note"),
            resolved_at=opt_int("resolved_at"),
            resolved_by=opt_str("resolved_by"),
            fingerprint=raw.get("fp", ""),
            epoch=int(raw.get("epoch", 1)),
            updated_at=int(raw.get("updated_at", raw["last_seen"])),
            timestamp=opt_int("timestamp"),
            opened_at=opt_int("opened_at"),
            last_notified_at=opt_int("last_notified_at"),
            rev=int(raw.get("rev") or 0),
            silenced_by=_id_list(raw.get("silenced_by")),
            inhibited_by=_id_list(raw.get("inhibited_by")),
            cleared_at=opt_int("cleared_at"),
            flapping=raw.get("flapping") == "1",
        )

    def to_public(self) -> dict[str, Any]:
        """The JSON state of the contract (docs/mqtt-api.md, "State out")."""
        return {
            "id": self.id,
            "state": self.state.value,
            "priority": self.priority.value,
            "severity": self.severity,
            "source": self.source,
            "type": self.type,
            "message": self.message,
            "attributes": self.attributes,
            "count": self.count,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "timestamp": iso(self.timestamp),
            "group_id": self.group_id,
            "escalation_level": self.escalation_level,
            "next_escalation_at": iso(self.next_escalation_at),
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": iso(self.acknowledged_at),
            "ack_note": self.ack_note,
            "resolved_at": iso(self.resolved_at),
            "resolved_by": self.resolved_by,
            "updated_at": iso(self.updated_at),
            "last_notified_at": iso(self.last_notified_at),
            "silenced_by": list(self.silenced_by),
            "inhibited_by": list(self.inhibited_by),
            "cleared_at": iso(self.cleared_at),
            "flapping": self.flapping,
        }


def _id_list(raw: Any) -> tuple[str, ...]:
    # The scripts store a JSON list; absent, or `[]`, on most alerts.
    if not raw or raw == "[]":
        return ()
    return tuple(json.loads(raw))


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """One group's state, published on `<base>/group/<id>`."""

    id: str
    key: str
    alert_ids: tuple[str, ...]
    highest_priority: Priority | None
    state: str  # "active" | "acknowledged" | "resolved"
    created_at: int
    updated_at: int
    last_digest_at: int | None = None

    @property
    def count(self) -> int:
        return len(self.alert_ids)

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "alert_ids": list(self.alert_ids),
            "count": self.count,
            "highest_priority": self.highest_priority.value if self.highest_priority else None,
            "state": self.state,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


# How much of an alert's message the summary repeats: the list is for a dashboard, and
# Home Assistant stores no attributes past 16 KiB.
SUMMARY_MESSAGE_CHARS = 100


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """One line of the summary's list of open alerts (for a dashboard)."""

    id: str
    priority: Priority
    state: State
    source: str
    type: str
    message: str
    first_seen: int

    def to_public(self, now: int) -> dict[str, Any]:
        message = self.message
        if len(message) > SUMMARY_MESSAGE_CHARS:
            message = message[: SUMMARY_MESSAGE_CHARS - 1] + "\u2026"
        return {
            "id": self.id,
            "name": readable_name(self.source, self.type),
            "priority": self.priority.value,
            "state": self.state.value,
            "source": self.source,
            "type": self.type,
            "message": message,
            "first_seen": iso(self.first_seen),
            "age": max(0, (now - self.first_seen) // 1000),
        }


_WORD_BREAKS = re.compile(r"[\s_.-]+")


def readable_name(source: str, alert_type: str) -> str:
    """`basement`, `water_leak` -> "Basement water leak": what a person calls the alert."""
    text = _WORD_BREAKS.sub(" ", f"{source} {alert_type}").strip()
    return text[:1].upper() + text[1:] if text else "Alert"


@dataclass(frozen=True, slots=True)
class Summary:
    active: int
    acknowledged: int
    escalated: int
    by_priority: dict[str, int]
    alerts: tuple[str, ...]
    active_by_priority: dict[str, int] = field(default_factory=dict)
    # The most urgent open alerts (priority, then newest first), and when this was read.
    open_alerts: tuple[OpenAlert, ...] = ()
    at: int = 0
    silenced: int = 0  # open alerts with a silence on

    @property
    def highest_priority(self) -> str | None:
        for priority in Priority:
            if self.by_priority.get(priority.value, 0) > 0:
                return priority.value
        return None

    def to_public(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "acknowledged": self.acknowledged,
            "escalated": self.escalated,
            "open": self.active + self.acknowledged,
            "by_priority": self.by_priority,
            "active_by_priority": self.active_by_priority,
            "highest_priority": self.highest_priority,
            "alerts": list(self.alerts),
            "open_alerts": [alert.to_public(self.at) for alert in self.open_alerts],
            "silenced": self.silenced,
        }
