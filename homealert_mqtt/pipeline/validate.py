"""Step 1: turn an MQTT payload into an IncomingAlert, or reject it with a reason.

The rules are the contract's (docs/mqtt-api.md, "Alerts in"). Nothing here raises
anything but Rejected: a malformed payload must never reach the rest of the pipeline.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from homealert_mqtt.models import IncomingAlert, Priority
from homealert_mqtt.pipeline.jsontext import compact
from homealert_mqtt.topics import SOURCE_PATTERN

_LOGGER = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 1024
MAX_ATTRIBUTES_BYTES = 8 * 1024
MAX_ATTRIBUTES_DEPTH = 8
MAX_SEVERITY_CHARS = 32
MAX_DEDUP_KEY_CHARS = 255
STATUSES = ("firing", "resolved")
KNOWN_FIELDS = frozenset(
    {
        "source",
        "type",
        "severity",
        "priority",
        "message",
        "status",
        "dedup_key",
        "attributes",
        "timestamp",
    }
)
_PRIORITY = re.compile(r"^[Pp][1-5]$")
# Only a \uD800-\uDFFF escape can decode to a lone surrogate (raw ones are not UTF-8).
# Devices that escape all non-ASCII text (`\u00fc`) have none: no re-encoding for them.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Device timestamps must be representable as ISO 8601 UTC when the state is published.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


class Rejected(Exception):
    """The payload breaks a rule; the message says which, for `<base>/error`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int


_warned_fields: set[str] = set()


class Parsed(NamedTuple):
    alert: IncomingAlert
    attributes_json: str  # compact JSON of alert.attributes, as measured against the limit


def parse_alert(payload: bytes, topic_source: str | None, limits: Limits) -> IncomingAlert:
    return parse(payload, topic_source, limits).alert


def parse(payload: bytes, topic_source: str | None, limits: Limits) -> Parsed:
    """The alert, with its attributes as JSON: the size check had to encode them anyway."""
    if len(payload) > limits.max_payload_bytes:
        raise Rejected(
            f"payload is {len(payload)} bytes, over the limit of {limits.max_payload_bytes}"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Rejected(f"payload is not valid UTF-8 (byte {err.start})") from err
    try:
        data = _decode(text)
    except RecursionError as err:
        raise Rejected("payload is nested too deeply") from err
    except ValueError as err:
        raise Rejected(f"payload is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise Rejected(f"payload must be a JSON object, got {_json_type(data)}")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        _check_encodable(data)
    return _build(data, topic_source)


def _decode(text: str) -> Any:
    # json.loads(text, ...) with these hooks, whose decoder (and its scanner) is built
    # once here instead of on every call. json.loads checks for a BOM before decoding;
    # so does this, with its message.
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259): echoed in state, they would break
    # every strict consumer of the retained topics.
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def _check_encodable(data: dict[str, Any]) -> None:
    """A `\\ud800`-style escape decodes to a lone surrogate, which cannot be encoded
    as UTF-8 again: it would fail in Redis or in the published state, not here."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise Rejected("payload has an unpaired UTF-16 surrogate escape") from err
    except RecursionError as err:
        raise Rejected("payload is nested too deeply") from err


def _build(data: dict[str, Any], topic_source: str | None) -> Parsed:
    source = _name(data, "source", required=topic_source is None)
    if topic_source is not None:
        if source is not None and source != topic_source:
            raise Rejected(f"source {source!r} contradicts the topic's source {topic_source!r}")
        source = topic_source
    assert source is not None  # required above when the topic gives none
    alert_type = _name(data, "type", required=True)
    assert alert_type is not None

    severity = _optional_str(data, "severity", MAX_SEVERITY_CHARS)
    severity = severity.lower() if severity else None
    explicit = _optional_str(data, "priority", 8)
    if explicit is not None and not _PRIORITY.match(explicit):
        raise Rejected(f"priority must be P1..P5, got {explicit!r}")

    # Only a missing status means firing: an empty one is as malformed as "maybe", and a
    # device that meant "resolved" must hear so rather than page the house.
    given = _optional_str(data, "status", 16)
    status = "firing" if given is None else given.lower()
    if status not in STATUSES:
        raise Rejected(f"status must be firing or resolved, got {data['status']!r}")

    dedup_key = _optional_str(data, "dedup_key", MAX_DEDUP_KEY_CHARS)
    if dedup_key == "":
        raise Rejected("dedup_key must not be empty")

    attributes = data.get("attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise Rejected(f"attributes must be an object, got {_json_type(attributes)}")
    unknown_names = data.keys() - KNOWN_FIELDS
    unknown = tuple(sorted(unknown_names)) if unknown_names else ()
    if unknown:
        # Kept, not rejected: a typo in a device's script must never lose a page.
        attributes = {**attributes, **{name: data[name] for name in unknown}}
        for name in unknown:
            if name not in _warned_fields and len(_warned_fields) < 1000:
                _warned_fields.add(name)
                _LOGGER.warning("unknown alert field %r kept under attributes", name[:64])
    attributes_json = _check_attributes(attributes)

    alert = IncomingAlert(
        source=source,
        type=alert_type,
        severity=severity,
        explicit_priority=Priority(explicit.upper()) if explicit else None,
        message=_optional_str(data, "message", MAX_MESSAGE_CHARS) or "",
        status=status,
        dedup_key=dedup_key,
        attributes=attributes,
        timestamp_ms=_timestamp(data.get("timestamp")),
        unknown_fields=unknown,
    )
    return Parsed(alert, attributes_json)


def _name(data: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = data.get(field)
    if value is None:
        if required:
            raise Rejected(f"{field} is required")
        return None
    if not isinstance(value, str):
        raise Rejected(f"{field} must be a string, got {_json_type(value)}")
    if not SOURCE_PATTERN.match(value):
        raise Rejected(f"{field} must be 1-64 of [A-Za-z0-9_.-], got {value[:80]!r}")
    return value


def _optional_str(data: dict[str, Any], field: str, max_chars: int) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected(f"{field} must be a string, got {_json_type(value)}")
    if len(value) > max_chars:
        raise Rejected(f"{field} is {len(value)} characters, over the limit of {max_chars}")
    return value


def _check_attributes(attributes: dict[str, Any]) -> str:
    """The attributes' compact JSON, after checking its depth and size."""
    if _depth(attributes) > MAX_ATTRIBUTES_DEPTH:
        raise Rejected(f"attributes are nested deeper than {MAX_ATTRIBUTES_DEPTH} levels")
    text = compact(attributes)
    size = len(text.encode())
    if size > MAX_ATTRIBUTES_BYTES:
        raise Rejected(f"attributes are {size} bytes as JSON, over the limit of 8 KiB")
    return text


def _depth(value: Any, level: int = 1) -> int:
    """Nesting depth, stopping early once past the limit; anything inside a container on
    the limit's level counts as past it."""
    if level > MAX_ATTRIBUTES_DEPTH:
        return level
    if isinstance(value, dict):
        children: Collection[Any] = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return level - 1
    if children and level == MAX_ATTRIBUTES_DEPTH:
        return level + 1
    deepest = level
    for child in children:
        if isinstance(child, dict | list):  # no call for scalars, most values
            deepest = max(deepest, _depth(child, level + 1))
    return deepest


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise Rejected("timestamp must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise Rejected(f"timestamp is not ISO 8601: {value!r}") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        in_range = _EARLIEST <= moment <= _LATEST
    except OverflowError:  # a far offset moves it past year 1 or 9999
        in_range = False
    if not in_range:
        raise Rejected(f"timestamp is outside 1970..9999: {value!r}")
    return int(moment.timestamp() * 1000)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return "a string"
