"""Inhibition: while an open alert matches a rule's `source_matchers`, every other open
alert that matches its `target_matchers` and has the same values of its `equal` fields is
inhibited (`inhibited_by`), and nobody is paged for it (`alerts.inhibit_rules`).

Which open alerts are sources is kept in Redis (ingest.lua records them, and
inhibit_release.lua lets their targets go once they are resolved); the service keeps a
copy to match against, reloaded when Redis's version counter moved, as for silences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homealert_mqtt.noise.matchers import Matcher, check_field, field_value
from homealert_mqtt.noise.silences import Silence, SilenceIndex

FOREVER = 2**62


@dataclass(frozen=True, slots=True)
class InhibitRule:
    source: Matcher
    target: Matcher
    equal: tuple[str, ...] = ()

    def same(self, source: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
        return all(field_value(source, f) == field_value(target, f) for f in self.equal)


def check_equal(fields: Any) -> tuple[str, ...]:
    """`equal`: a list of matcher field names; raises BadMatcher for one that is not."""
    for name in fields:
        check_field(name, "equal")
    return tuple(fields)


class RuleIndex:
    """The rules by their target matchers and by their source matchers, each through a
    SilenceIndex (a rule stands in as a silence that is always on): a hundred rules cost
    an alert a few look-ups."""

    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self.rules = tuple(rules)
        self._targets = SilenceIndex(
            Silence(str(i), rule.target, 0, FOREVER) for i, rule in enumerate(self.rules)
        )
        self._sources = SilenceIndex(
            Silence(str(i), rule.source, 0, FOREVER) for i, rule in enumerate(self.rules)
        )

    def as_target(self, fields: Mapping[str, Any]) -> list[InhibitRule]:
        return [self.rules[int(i)] for i in self._targets.matching(fields, 0)] if self.rules else []

    def is_source(self, fields: Mapping[str, Any]) -> bool:
        return bool(self.rules) and bool(self._sources.matching(fields, 0))


class Inhibitions:
    """The open sources (their matcher fields), and which of them inhibit an alert."""

    def __init__(self, rules: RuleIndex) -> None:
        self.rules = rules
        self.sources: Mapping[str, Mapping[str, Any]] = {}  # source alert id -> fields

    def inhibitors(self, alert_id: str, fields: Mapping[str, Any]) -> list[str]:
        """Ids of the open sources that inhibit this alert (never itself), sorted."""
        if not self.sources:
            return []
        found = set()
        for rule in self.rules.as_target(fields):
            for source_id, source in self.sources.items():
                if (
                    source_id != alert_id
                    and rule.source.matches(source)
                    and rule.same(source, fields)
                ):
                    found.add(source_id)
        return sorted(found)
