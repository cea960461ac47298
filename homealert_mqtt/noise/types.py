"""Per-type behaviour (`alerts.types.<type>`, `alerts.types.default` for the rest):

- `hold_down`: an alert stays `new` and pages nobody until it has been open that long
  (its level-0 timer is due then); resolved before, it never pages.
- `auto_resolve`: an open alert not repeated for that long resolves itself
  (`resolved_by: "auto"`): a Redis timer pushed back by every repeat (auto_resolve.lua).
- `latch`: a device's `status: resolved` does not resolve the alert; it records
  `cleared_at` (event `cleared`) and the alert stays open until a person resolves it.
- `flapping: {reopens, window}`: see noise/flapping.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_TYPE = "default"


@dataclass(frozen=True, slots=True)
class TypeBehaviour:
    hold_down: int = 0  # seconds
    auto_resolve: int = 0  # seconds; 0: never
    latch: bool = False
    flap_reopens: int = 0  # re-openings within flap_window that make it flap; 0: never
    flap_window: int = 0  # seconds

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> TypeBehaviour:
        flapping = raw.get("flapping") or {}
        return cls(
            hold_down=raw.get("hold_down", 0),
            auto_resolve=raw.get("auto_resolve", 0),
            latch=raw.get("latch", False),
            flap_reopens=flapping.get("reopens", 0),
            flap_window=flapping.get("window", 0),
        )


PLAIN = TypeBehaviour()


def behaviour_of(types: Mapping[str, TypeBehaviour], alert_type: str) -> TypeBehaviour:
    return types.get(alert_type) or types.get(DEFAULT_TYPE) or PLAIN
