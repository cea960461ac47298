"""parse_alert: the contract's rules, and nothing but Rejected ever escapes (hypothesis)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homealert_mqtt.models import IncomingAlert, Priority
from homealert_mqtt.pipeline import validate
from homealert_mqtt.pipeline.validate import (
    KNOWN_FIELDS,
    MAX_ATTRIBUTES_BYTES,
    MAX_ATTRIBUTES_DEPTH,
    MAX_MESSAGE_CHARS,
    Limits,
    Parsed,
    Rejected,
    parse_alert,
)
from homealert_mqtt.topics import SOURCE_PATTERN

LIMITS = Limits(max_payload_bytes=65_536)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(data: Any, topic_source: str | None = None) -> IncomingAlert:
    return parse_payload(data, topic_source).alert


def parse_payload(data: Any, topic_source: str | None = None) -> Parsed:
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    parsed = validate.parse(payload, topic_source, LIMITS)
    assert parse_alert(payload, topic_source, LIMITS) == parsed.alert
    return parsed


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def assert_contract(alert: IncomingAlert, data: dict[str, Any], topic_source: str | None) -> None:
    """What an accepted alert must satisfy (docs/mqtt-api.md, "Alerts in")."""
    assert SOURCE_PATTERN.match(alert.source)
    assert SOURCE_PATTERN.match(alert.type)
    if topic_source is not None:
        assert alert.source == topic_source
    assert alert.severity is None or (alert.severity == alert.severity.lower() != "")
    assert alert.explicit_priority is None or alert.explicit_priority in Priority
    assert isinstance(alert.message, str)
    assert len(alert.message) <= MAX_MESSAGE_CHARS
    assert alert.status in ("firing", "resolved")
    given = data.get("status")
    assert alert.status == ("firing" if given is None else given.lower())
    assert alert.dedup_key is None or 0 < len(alert.dedup_key) <= 255
    assert isinstance(alert.attributes, dict)
    # Echoed in state: strict JSON, UTF-8, within the limits.
    encoded = json.dumps(alert.attributes, ensure_ascii=False, allow_nan=False).encode()
    assert len(json.dumps(alert.attributes, ensure_ascii=False, separators=(",", ":"))) <= (
        MAX_ATTRIBUTES_BYTES
    )
    assert encoded
    assert depth(alert.attributes) <= MAX_ATTRIBUTES_DEPTH
    alert.message.encode()
    (alert.severity or "").encode()
    (alert.dedup_key or "").encode()
    for name in set(data) - KNOWN_FIELDS:  # unknown fields are kept, not rejected
        assert alert.attributes[name] == data[name]
    if alert.timestamp_ms is not None:
        assert 0 <= alert.timestamp_ms <= 253_402_300_799_000


# -- examples -----------------------------------------------------------------------


def test_minimal_alert_and_defaults() -> None:
    alert = parse({"source": "nas", "type": "disk_space"})
    assert (alert.severity, alert.explicit_priority, alert.status) == (None, None, "firing")
    assert (alert.message, alert.attributes, alert.timestamp_ms) == ("", {}, None)


def test_fields_are_normalised() -> None:
    alert = parse(
        {
            "source": "nas",
            "type": "smart",
            "severity": "CRITICAL",
            "priority": "p2",
            "status": "RESOLVED",
            "timestamp": "2026-01-02T03:04:05Z",
            "attributes": None,
            "colour": "red",
        }
    )
    assert alert.severity == "critical"
    assert alert.explicit_priority is Priority.P2
    assert alert.status == "resolved"
    assert alert.timestamp_ms == 1_767_323_045_000
    assert alert.attributes == {"colour": "red"}
    assert alert.unknown_fields == ("colour",)


def test_naive_timestamp_is_utc() -> None:
    assert parse({"source": "a", "type": "b", "timestamp": "1970-01-01T00:00:01"}).timestamp_ms == (
        1000
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"source": "a", "type": "b", "attributes": {"x": math.nan}}, "not JSON"),
        ({"source": "a", "type": "b", "attributes": {"x": math.inf}}, "not JSON"),
        (b'{"source": "a", "type": "b", "attributes": {"x": 1e999}}', "out of range"),
        (b'{"source": "a", "type": "b", "message": "\\ud800"}', "surrogate"),
        (b'{"source": "a", "type": "b", "severity": "\\udfff"}', "surrogate"),
        (b'{"source": "a", "type": "b", "dedup_key": "x\\ud83d"}', "surrogate"),
        (b'{"source": "a", "type": "b", "attributes": {"\\udc00": 1}}', "surrogate"),
        (b'{"source": "a", "type": "b", "extra": ["\\ud800"]}', "surrogate"),
        ({"source": "a", "type": "b", "timestamp": "9999-12-31T23:59:59-23:59"}, "outside"),
        ({"source": "a", "type": "b", "timestamp": "0001-01-01T00:00:00+23:59"}, "outside"),
        ({"source": "a", "type": "b", "timestamp": "1969-12-31T23:59:59Z"}, "outside"),
        ({"source": "a", "type": "b", "timestamp": 1_700_000_000}, "ISO 8601"),
        ({"source": "a", "type": "b", "dedup_key": ""}, "must not be empty"),
        ({"source": "a", "type": "b", "status": 1}, "status must be a string"),
        ({"source": "a", "type": "b", "status": ""}, "status must be firing or resolved"),
        ({"source": "a", "type": "b", "status": "  "}, "status must be firing or resolved"),
        ({"source": "a", "type": "b", "severity": "x" * 33}, "over the limit"),
        ({"type": "b"}, "source is required"),
    ],
)
def test_rejected(data: Any, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        parse(data)


def test_rejected_with_the_json_modules_message() -> None:
    with pytest.raises(Rejected) as caught:
        parse("\ufeff{}".encode())
    assert caught.value.reason == (
        "payload is not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): "
        "line 1 column 1 (char 0)"
    )


def nested(levels: int, inner: Any) -> Any:
    """`inner` in `levels` lists."""
    for _ in range(levels):
        inner = [inner]
    return inner


def test_attributes_depth_limit() -> None:
    # The attributes object is level 1; a container on level 8 must be empty.
    assert parse({"source": "a", "type": "b", "attributes": {"x": nested(6, [])}})
    assert parse({"source": "a", "type": "b", "attributes": {"x": 1, "y": nested(6, 1)}})
    for too_deep in (nested(7, 1), nested(7, {}), nested(8, None)):
        with pytest.raises(Rejected, match="nested deeper than 8 levels"):
            parse({"source": "a", "type": "b", "attributes": {"x": 1, "y": too_deep}})
    with pytest.raises(Rejected, match="nested deeper than 8 levels"):
        parse({"source": "a", "type": "b", "unknown": nested(8, None)})


def test_attributes_json_is_compact() -> None:
    parsed = parse_payload({"source": "a", "type": "b", "attributes": {"é": [1, 2.5]}, "x": 1})
    assert parsed.attributes_json == '{"é":[1,2.5],"x":1}'
    assert json.loads(parsed.attributes_json) == parsed.alert.attributes


def test_surrogate_pairs_are_fine() -> None:
    alert = parse(b'{"source": "a", "type": "b", "message": "\\ud83d\\udca7 water"}')
    assert alert.message == "\U0001f4a7 water"


def test_topic_source() -> None:
    assert parse({"type": "b"}, "garage.door").source == "garage.door"
    assert parse({"type": "b", "source": "garage.door"}, "garage.door").source == "garage.door"
    with pytest.raises(Rejected, match="contradicts"):
        parse({"type": "b", "source": "other"}, "garage.door")


def test_payload_limit_is_bytes() -> None:
    with pytest.raises(Rejected, match="over the limit"):
        parse_alert(b" " * 257, None, Limits(max_payload_bytes=256))


# -- properties ---------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
names = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
anything = json_values | st.text() | st.integers() | st.floats()
field_values = {
    "source": names | anything,
    "type": names | anything,
    "severity": st.sampled_from(["critical", "HIGH", "Medium", "low", "info", "odd", ""])
    | anything,
    "priority": st.sampled_from(["P1", "p3", "P5", "P0", "P9", "high"]) | anything,
    "message": st.text(max_size=1100) | anything,
    "status": st.sampled_from(["firing", "resolved", "Resolved", "maybe", ""]) | anything,
    "dedup_key": st.text(max_size=300) | anything,
    "attributes": st.dictionaries(st.text(max_size=10), json_values, max_size=6) | anything,
    "timestamp": st.sampled_from(
        ["2026-11-27T07:30:00Z", "2026-11-27T07:30:00+02:00", "2026-11-27", "yesterday"]
    )
    | st.datetimes().map(lambda d: d.isoformat())
    | anything,
}
known_field_dicts = st.fixed_dictionaries(
    {},
    optional={**field_values, "unknown_field": json_values, "Type": json_values},
)
surrogate_text = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))


def check(payload: bytes, topic_source: str | None = None) -> None:
    """Either Rejected, or an alert that keeps the contract."""
    try:
        alert = parse_alert(payload, topic_source, LIMITS)
    except Rejected:
        return
    data = json.loads(payload)
    assert_contract(alert, data, topic_source)


@FAST
@given(st.binary(max_size=300))
def test_random_bytes(payload: bytes) -> None:
    check(payload)


@FAST
@given(json_values)
def test_random_json(value: Any) -> None:
    check(json.dumps(value).encode())


@FAST
@given(known_field_dicts, st.none() | names)
def test_known_fields_of_random_types(data: dict[str, Any], topic_source: str | None) -> None:
    check(json.dumps(data).encode(), topic_source)


@FAST
@given(known_field_dicts, surrogate_text)
def test_escaped_surrogates_anywhere(data: dict[str, Any], bad: str) -> None:
    data = {**data, "source": "s", "type": "t", "message": bad}
    check(json.dumps(data).encode())  # ensure_ascii: lone surrogates become \\udxxx escapes


@FAST
@given(st.dictionaries(st.sampled_from(sorted(KNOWN_FIELDS)), st.text()).map(json.dumps))
def test_text_mangled_json(text: str) -> None:
    for cut in (len(text) // 2, len(text) - 1):
        check(text[:cut].encode())
