"""Matchers and the silence index: globs with fnmatchcase semantics on the contract's
fields; bad matchers refused with the field named."""

from __future__ import annotations

import random
from typing import Any

import pytest

from homealert_mqtt.noise.matchers import BadMatcher, Matcher
from homealert_mqtt.noise.silences import Silence, SilenceIndex

ALERT: dict[str, Any] = {
    "id": "garage-door_open-1a2b3c4d",
    "source": "garage",
    "type": "door_open",
    "severity": "high",
    "priority": "P2",
    "group_id": None,
    "attributes": {"door": "north", "open": True, "count": 3},
}


@pytest.mark.parametrize(
    ("patterns", "matches"),
    [
        ({"source": "garage"}, True),
        ({"source": "Garage"}, False),  # case-sensitive
        ({"source": "gar*"}, True),
        ({"type": "door_*", "source": "garage"}, True),
        ({"type": "door_*", "source": "shed"}, False),  # every field must match
        ({"type": "door_ope?"}, True),
        ({"priority": "P[12]"}, True),
        ({"priority": "P[!12]"}, False),
        ({"group_id": ""}, True),  # no group: matches as ""
        ({"group_id": "*"}, True),
        ({"attributes.door": "north"}, True),
        ({"attributes.open": "true"}, True),  # JSON text of a non-string
        ({"attributes.count": "3"}, True),
        ({"attributes.missing": "?*"}, False),
        ({"id": "garage-door_open-*"}, True),
        ({"source": "garage/*"}, False),
    ],
)
def test_globs(patterns: dict[str, str], matches: bool) -> None:
    assert Matcher.parse(patterns).matches(ALERT) is matches


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({}, "empty matcher"),
        ({"colour": "red"}, "matchers.colour: unknown field"),
        ({"attributes.": "x"}, "unknown field"),
        ({"attributes.a b": "x"}, "unknown field"),
        ({"source": 1}, "matchers.source: pattern must be a string, got int"),
        ({"source": None}, "pattern must be a string"),
        ({"source": ["a"]}, "pattern must be a string"),
        ([], "expected an object"),
        ("source=x", "expected an object"),
        ({"source": "x" * 300}, "over 256 characters"),
    ],
)
def test_bad_matchers(raw: Any, reason: str) -> None:
    with pytest.raises(BadMatcher, match=reason.replace("(", r"\(").replace("[", r"\[")):
        Matcher.parse(raw)


def _silence(sid: str, patterns: dict[str, str], start: int = 0, end: int = 10) -> Silence:
    return Silence(sid, Matcher.parse(patterns), start, end)


def test_index_finds_what_trying_each_silence_finds() -> None:
    rng = random.Random(7)
    values = {
        "source": ["garage", "nas", "basement", "attic"],
        "type": ["door_open", "disk", "water_leak"],
        "priority": ["P1", "P2", "P3"],
    }
    globs = ["*", "g*", "?as", "*_*", "P[12]"]
    silences = []
    for i in range(300):
        fields = rng.sample(sorted(values), rng.randint(1, 3))
        patterns = {
            f: rng.choice(values[f]) if rng.random() < 0.6 else rng.choice(globs) for f in fields
        }
        silences.append(_silence(f"s{i}", patterns, start=rng.randint(0, 5)))
    index = SilenceIndex(silences)
    for _ in range(200):
        alert = {f: rng.choice(v) for f, v in values.items()}
        now = rng.randint(0, 12)
        expected = sorted(s.id for s in silences if s.active(now) and s.matcher.matches(alert))
        assert index.matching(alert, now) == expected


def test_index_counts_only_silences_that_are_on() -> None:
    index = SilenceIndex([_silence("later", {"source": "garage"}, start=5, end=10)])
    assert index.matching(ALERT, 4) == []
    assert index.matching(ALERT, 5) == ["later"]
    assert index.matching(ALERT, 10) == []  # ends_at is the first moment it is off


def test_index_replaces_and_removes_in_place() -> None:
    index = SilenceIndex([_silence("a", {"source": "garage"}), _silence("g", {"type": "door*"})])
    assert index.matching(ALERT, 5) == ["a", "g"]
    index.add(_silence("a", {"source": "shed"}))
    index.remove("g")
    index.remove("never-was")
    assert index.matching(ALERT, 5) == []
    assert len(index) == 1
    index.add(_silence("g2", {"type": "door*", "source": "gar*"}))
    assert index.matching(ALERT, 5) == ["g2"]
