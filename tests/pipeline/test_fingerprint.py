"""Fingerprints and the ids made from them: topic-safe for any source and type, stable."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homealert_mqtt.models import IncomingAlert
from homealert_mqtt.pipeline.fingerprint import (
    Identity,
    _names_and_values,
    field_value,
    group_identity,
    identify,
)
from homealert_mqtt.topics import ID_PATTERN

NAMES = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
DEDUP = ("source", "type", "severity")


def alert(**fields: Any) -> IncomingAlert:
    base: dict[str, Any] = {
        "source": "nas",
        "type": "disk_space",
        "severity": None,
        "explicit_priority": None,
        "message": "",
        "status": "firing",
        "dedup_key": None,
        "attributes": {},
        "timestamp_ms": None,
    }
    return IncomingAlert(**{**base, **fields})


@settings(max_examples=500, deadline=None)
@given(NAMES, NAMES, st.none() | st.text(max_size=40), st.none() | st.text(min_size=1))
def test_ids_are_topic_safe_for_any_source_and_type(
    source: str, alert_type: str, severity: str | None, dedup_key: str | None
) -> None:
    one = alert(source=source, type=alert_type, severity=severity, dedup_key=dedup_key)
    identity = identify(one, DEDUP)
    assert ID_PATTERN.match(identity.base_id), identity.base_id
    # with the occurrence suffix the store adds ("-2", ..., "-99999")
    assert ID_PATTERN.match(identity.base_id + "-99999")
    assert identify(one, DEDUP) == identity  # stable
    group = group_identity(one, ("source", "type"))
    assert ID_PATTERN.match(group.base_group_id + "-999"), group.base_group_id


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.text() | st.integers(), max_size=4), st.text())
def test_group_ids_from_any_attribute_values(attributes: dict[str, Any], message: str) -> None:
    one = alert(attributes=attributes, message=message)
    group = group_identity(one, ("source", "attributes.room", "message"))
    assert ID_PATTERN.match(group.base_group_id)
    assert len(group.key_text) <= 512


def test_same_fingerprint_same_id_and_only_dedup_attributes_count() -> None:
    first = identify(alert(message="80%"), DEDUP)
    again = identify(alert(message="95%", attributes={"x": 1}), DEDUP)
    assert first == again
    assert identify(alert(severity="high"), DEDUP) != first
    assert identify(alert(source="other"), DEDUP).fingerprint != first.fingerprint
    assert first.base_id.startswith("nas-disk_space-")


def test_dedup_key_replaces_the_attributes() -> None:
    one = identify(alert(dedup_key="door-1", severity="low"), DEDUP)
    two = identify(alert(dedup_key="door-1", severity="critical", source="x"), DEDUP)
    assert one.fingerprint == two.fingerprint
    assert identify(alert(dedup_key="door-2"), DEDUP).fingerprint != one.fingerprint


def test_attribute_values_in_the_fingerprint() -> None:
    attrs = ("source", "attributes.disk")
    assert identify(alert(attributes={"disk": 1}), attrs) != identify(
        alert(attributes={"disk": 2}), attrs
    )
    assert field_value(alert(attributes={"disk": {"b": 1, "a": 2}}), "attributes.disk") == (
        '{"a": 2, "b": 1}'
    )
    # A missing attribute and an empty one are the same, not an error.
    assert field_value(alert(), "attributes.nothing") == ""


def test_ids_of_names_without_letters_or_digits() -> None:
    identity = identify(alert(source="...", type="---"), DEDUP)
    assert ID_PATTERN.match(identity.base_id)
    assert identity.base_id.startswith("a-")


def test_fingerprints_never_change() -> None:
    """Stored alerts are found again by these: a new version must compute the same ones."""
    one = alert(severity="high", attributes={"room": 'Küche "2"'})
    assert identify(one, DEDUP) == Identity(
        fingerprint="67fb111cecaecafddc874925710d1e43", base_id="nas-disk_space-67fb111c"
    )
    assert identify(one, ("source", "attributes.room", "message")).fingerprint == (
        "e57ad594d499ad24c964205549b00f36"
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), max_size=4), st.lists(st.text(), max_size=4))
def test_fingerprint_material_is_the_json_of_names_and_values(
    names: list[str], values: list[str]
) -> None:
    assert _names_and_values(tuple(names), values) == json.dumps([names, values])
