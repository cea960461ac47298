"""Matchers: `{field: glob}` objects shared by silences and inhibit rules.

A pattern is a case-sensitive glob (`fnmatch.fnmatchcase`: `*`, `?`, `[...]`, `[!...]`);
an alert matches when every field matches. The fields are the contract's (`id`, `source`,
`type`, `severity`, `priority`, `group_id`, `attributes.<name>`). A field the alert has no
value for matches as the empty string, as a missing label does in Alertmanager.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import translate
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homealert_mqtt.models import AlertRecord

FIELDS = ("id", "source", "type", "severity", "priority", "group_id")
ATTRIBUTE_PREFIX = "attributes."
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_GLOB_CHARS = frozenset("*?[")
MAX_FIELDS = 16
MAX_PATTERN_CHARS = 256


class BadMatcher(ValueError):
    """A matcher the contract rejects; the message names the field."""

    def __init__(self, where: str, reason: str, field: str | None = None) -> None:
        self.where = where
        self.field = field  # the field at fault, None when it is the whole matcher
        self.reason = reason
        super().__init__(f"{where}.{field}: {reason}" if field else f"{where}: {reason}")


def field_value(alert: Mapping[str, Any], name: str) -> str:
    """The text a pattern is matched against: the alert's value, or "" when it has none.

    Attribute values that are not strings match as their JSON text (`true`, `42`).
    """
    if name.startswith(ATTRIBUTE_PREFIX):
        attributes = alert.get("attributes")
        value = attributes.get(name[len(ATTRIBUTE_PREFIX) :]) if attributes else None
    else:
        value = alert.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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


def is_literal(pattern: str) -> bool:
    return not (_GLOB_CHARS & set(pattern))


@dataclass(frozen=True, slots=True)
class Matcher:
    """A validated matcher; `patterns` keeps the fields in the order given."""

    patterns: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, raw: Any, where: str = "matchers") -> Matcher:
        if not isinstance(raw, dict):
            raise BadMatcher(where, "expected an object of field: pattern")
        if not raw:
            raise BadMatcher(where, "an empty matcher would match every alert")
        if len(raw) > MAX_FIELDS:
            raise BadMatcher(where, f"at most {MAX_FIELDS} fields")
        patterns = []
        for name, pattern in raw.items():
            check_field(name, where)
            if not isinstance(pattern, str):
                reason = f"pattern must be a string, got {type(pattern).__name__}"
                raise BadMatcher(where, reason, name)
            if len(pattern) > MAX_PATTERN_CHARS:
                raise BadMatcher(where, f"pattern over {MAX_PATTERN_CHARS} characters", name)
            patterns.append((name, pattern))
        return cls(tuple(patterns))

    @property
    def compiled(self) -> tuple[tuple[str, re.Pattern[str]], ...]:
        return _compile(self.patterns)

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return all(regex.match(field_value(alert, name)) for name, regex in self.compiled)

    def anchor(self) -> tuple[str, str] | None:
        """A (field, exact value) every matching alert has, for an index; None when
        every pattern is a glob."""
        literal = [(name, p) for name, p in self.patterns if is_literal(p)]
        if not literal:
            return None
        # Rarest first: an id names one alert, a source a handful.
        order = {name: i for i, name in enumerate(("id", "source", "group_id", "type"))}
        return min(literal, key=lambda item: order.get(item[0], len(order)))

    def to_json(self) -> dict[str, str]:
        return dict(self.patterns)


def check_field(name: Any, where: str) -> None:
    if not isinstance(name, str):
        raise BadMatcher(where, "field names are strings")
    if name in FIELDS:
        return
    if name.startswith(ATTRIBUTE_PREFIX) and _ATTRIBUTE_NAME.match(name[len(ATTRIBUTE_PREFIX) :]):
        return
    known = ", ".join(FIELDS)
    raise BadMatcher(where, f"unknown field (known: {known}, attributes.<name>)", name)


_COMPILED: dict[tuple[tuple[str, str], ...], tuple[tuple[str, re.Pattern[str]], ...]] = {}


def _compile(
    patterns: tuple[tuple[str, str], ...],
) -> tuple[tuple[str, re.Pattern[str]], ...]:
    found = _COMPILED.get(patterns)
    if found is None:
        found = tuple((name, re.compile(translate(p))) for name, p in patterns)
        if len(_COMPILED) > 20_000:  # bounded: silences come and go
            _COMPILED.clear()
        _COMPILED[patterns] = found
    return found
