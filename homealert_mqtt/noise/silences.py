"""Silences: what one is, how a `<base>/silence/<id>/set` payload becomes one, and an
index that finds the silences of an alert without trying each of them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import translate
from typing import Any

from homealert_mqtt.models import iso
from homealert_mqtt.noise.matchers import BadMatcher, Matcher, field_value

# Alert ids' charset; `snooze-<alert id>` may be 7 characters longer than an alert id.
SILENCE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,102}$")
SNOOZE_PREFIX = "snooze-"
SCHEDULE_PREFIX = "schedule:"
SCHEDULE_ID = re.compile(r"^schedule:[a-z0-9][a-z0-9_-]{0,63}$")  # alerts.silences.schedules
MAX_SECONDS = 365 * 24 * 3600
MAX_TEXT = 1024
MAX_PAYLOAD = 8192


class BadSilence(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matcher: Matcher
    starts_at: int  # epoch ms
    ends_at: int
    created_by: str | None = None
    comment: str | None = None

    def active(self, now: int) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: int) -> str:
        return "active" if self.starts_at <= now else "pending"

    def to_public(self, now: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": self.matcher.to_json(),
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "created_by": self.created_by,
            "comment": self.comment,
            "state": self.state(now),
        }

    def to_redis(self) -> dict[str, str]:
        return {
            "id": self.id,
            "matchers": json.dumps(self.matcher.to_json(), ensure_ascii=False),
            "starts_at": str(self.starts_at),
            "ends_at": str(self.ends_at),
            "created_by": self.created_by or "",
            "comment": self.comment or "",
        }

    @classmethod
    def from_redis(cls, raw: Mapping[str, str]) -> Silence:
        return cls(
            id=raw["id"],
            matcher=Matcher.parse(json.loads(raw["matchers"])),
            starts_at=int(raw["starts_at"]),
            ends_at=int(raw["ends_at"]),
            created_by=raw.get("created_by") or None,
            comment=raw.get("comment") or None,
        )


def parse_time(value: Any, name: str) -> int:
    """ISO 8601 (`Z` or an offset; no zone means UTC) as epoch ms."""
    if not isinstance(value, str):
        raise BadSilence(f"{name}: expected an ISO 8601 time, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise BadSilence(f"{name}: not an ISO 8601 time: {value[:40]!r}") from err
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # the wire speaks UTC
    return int(parsed.timestamp() * 1000)


def _seconds(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadSilence(f"{name}: expected seconds (a number), got {value!r}"[:120])
    if value <= 0:
        raise BadSilence(f"{name}: must be more than 0 seconds, got {value}")
    if value > MAX_SECONDS:
        raise BadSilence(f"{name}: at most a year ({MAX_SECONDS} s), got {value}")
    return int(value * 1000)


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadSilence(f"{name}: expected a string")
    return value[:MAX_TEXT]


def _json_object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise BadSilence(f"payload over {MAX_PAYLOAD} bytes")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadSilence(f"payload is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise BadSilence("payload must be a JSON object")
    return data


KNOWN_KEYS = frozenset({"matchers", "duration", "ends_at", "starts_at", "by", "comment"})


def parse_set(silence_id: str, payload: bytes, now: int) -> Silence:
    """A `<base>/silence/<id>/set` payload as a Silence; BadSilence says what is wrong."""
    if not SILENCE_ID.match(silence_id):
        raise BadSilence(f"silence id {silence_id[:110]!r} is not 1-103 of [a-z0-9_-]")
    data = _json_object(payload)
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise BadSilence(f"unknown key(s): {', '.join(unknown)}"[:200])
    if "matchers" not in data:
        raise BadSilence("matchers: required")
    try:
        matcher = Matcher.parse(data["matchers"])
    except BadMatcher as err:
        raise BadSilence(str(err)) from err
    starts = parse_time(data["starts_at"], "starts_at") if "starts_at" in data else now
    if ("duration" in data) == ("ends_at" in data):
        raise BadSilence("give exactly one of duration (seconds) and ends_at")
    if "duration" in data:
        ends = starts + _seconds(data["duration"], "duration")
    else:
        ends = parse_time(data["ends_at"], "ends_at")
        if ends <= starts:
            raise BadSilence("ends_at: must be after starts_at")
        if ends - starts > MAX_SECONDS * 1000:
            raise BadSilence("ends_at: a silence lasts at most a year")
    if ends <= now:
        raise BadSilence("ends_at: already past; the silence would never be on")
    return Silence(silence_id, matcher, starts, ends, _text(data, "by"), _text(data, "comment"))


@dataclass(frozen=True, slots=True)
class Snooze:
    seconds: int
    by: str | None


DEFAULT_SNOOZE = 3600


def parse_snooze(payload: bytes) -> Snooze:
    """`{"for": seconds, "by": ...}`, a bare number, or empty (one hour)."""
    text = payload.decode("utf-8", "replace").strip()
    if not text:
        return Snooze(DEFAULT_SNOOZE, None)
    try:
        data = json.loads(text)
    except ValueError as err:
        raise BadSilence(f"snooze payload is not a number or JSON: {err}") from err
    if isinstance(data, dict):
        seconds = data.get("for", DEFAULT_SNOOZE)
        return Snooze(_seconds(seconds, "for") // 1000, _text(data, "by"))
    return Snooze(_seconds(data, "for") // 1000, None)


def snooze_id(alert_id: str) -> str:
    return SNOOZE_PREFIX + alert_id


class SilenceIndex:
    """Silences by an exact (field, value) every alert they match must have; the others
    (every pattern a glob) behind one combined regex per field, tried in C, so that an
    alert no glob silence matches costs one regex per field instead of one per silence.
    A thousand snoozes and per-device silences cost an alert a few dict look-ups.

    Changed in place (`add`, `remove`): a script setting a thousand silences one by one
    must not rebuild it a thousand times."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self.silences: dict[str, Silence] = {}
        self._anchored: dict[tuple[str, str], dict[str, Silence]] = {}
        self._anchored_fields: dict[str, int] = {}  # field -> how many anchors use it
        self._globbed: dict[str, dict[str, Silence]] = {}  # by the first pattern's field
        self._compiled: list[tuple[str, re.Pattern[str], list[Silence]]] | None = None
        for silence in silences:
            self.add(silence)

    def __len__(self) -> int:
        return len(self.silences)

    def add(self, silence: Silence) -> None:
        """Add, or replace the silence of the same id."""
        self.remove(silence.id)
        self.silences[silence.id] = silence
        anchor = silence.matcher.anchor()
        if anchor is None:
            self._globbed.setdefault(silence.matcher.patterns[0][0], {})[silence.id] = silence
            self._compiled = None
        else:
            self._anchored.setdefault(anchor, {})[silence.id] = silence
            self._anchored_fields[anchor[0]] = self._anchored_fields.get(anchor[0], 0) + 1

    def remove(self, silence_id: str) -> None:
        old = self.silences.pop(silence_id, None)
        if old is None:
            return
        anchor = old.matcher.anchor()
        if anchor is None:
            name = old.matcher.patterns[0][0]
            _discard(self._globbed, name, silence_id)
            self._compiled = None
        else:
            _discard(self._anchored, anchor, silence_id)
            self._anchored_fields[anchor[0]] -= 1
            if not self._anchored_fields[anchor[0]]:
                del self._anchored_fields[anchor[0]]

    def _globs(self) -> list[tuple[str, re.Pattern[str], list[Silence]]]:
        # Compiled when first needed after a change: a burst of changes compiles once.
        if self._compiled is None:
            self._compiled = [
                (name, re.compile("|".join(map(_first_regex, group.values()))), [*group.values()])
                for name, group in sorted(self._globbed.items())
            ]
        return self._compiled

    def matching(self, alert: Mapping[str, Any], now: int) -> list[str]:
        """Ids of the active silences that match `alert` (its public fields), sorted."""
        if not self.silences:
            return []
        found = []
        for name, combined, group in self._globs():
            if combined.match(field_value(alert, name)):
                found += [s.id for s in group if s.active(now) and s.matcher.matches(alert)]
        for name in self._anchored_fields:
            for silence in self._anchored.get((name, field_value(alert, name)), {}).values():
                if silence.active(now) and silence.matcher.matches(alert):
                    found.append(silence.id)
        return sorted(set(found))


def _discard(table: dict[Any, dict[str, Silence]], key: Any, silence_id: str) -> None:
    group = table.get(key)
    if group is not None:
        group.pop(silence_id, None)
        if not group:
            del table[key]


def _first_regex(silence: Silence) -> str:
    return f"(?:{translate(silence.matcher.patterns[0][1])})"
