"""`presence:` as typed settings, and what each availability preset reads.

Presets, as each firmware publishes its availability (retained, by its last will):

- zigbee2mqtt: `<base_topic>/<device>/availability`, JSON `{"state": "online"}` (since
  Zigbee2MQTT 1.32) or plain `online`/`offline` (before it, or `legacy_availability_payload`)
- tasmota: `tele/<device>/LWT`, `Online`/`Offline`
- esphome: `<device>/status`, `online`/`offline` (the node's topic prefix is its name)
- shelly: `shellies/<device>/online`, `true`/`false` (Gen1)
- generic: `topic` with one `+` level for the device, `offline`/`online` payloads and an
  optional `json_key` holding them in a JSON object
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

DEFAULT_FOR = 300  # seconds offline before a device counts as gone


class Preset(StrEnum):
    ZIGBEE2MQTT = "zigbee2mqtt"
    TASMOTA = "tasmota"
    ESPHOME = "esphome"
    SHELLY = "shelly"
    GENERIC = "generic"


# preset -> (default base topic, topic pattern with {base} and + for the device,
#            offline payload, online payload, JSON key or None)
_PRESETS: dict[Preset, tuple[str, str, str, str, str | None]] = {
    Preset.ZIGBEE2MQTT: ("zigbee2mqtt", "{base}/+/availability", "offline", "online", "state"),
    Preset.TASMOTA: ("tele", "{base}/+/LWT", "Offline", "Online", None),
    Preset.ESPHOME: ("", "{base}+/status", "offline", "online", None),
    Preset.SHELLY: ("shellies", "{base}/+/online", "false", "true", None),
}


@dataclass(frozen=True, slots=True)
class AvailabilitySource:
    """One `presence.availability` entry, resolved to what it subscribes to and reads."""

    preset: Preset
    topic: str  # a filter with exactly one `+`, the device's level
    offline: str
    online: str
    json_key: str | None
    offline_for: int  # seconds
    severity: str

    @property
    def device_level(self) -> int:
        return self.topic.split("/").index("+")

    def device(self, topic: str) -> str | None:
        levels = topic.split("/")
        filter_levels = self.topic.split("/")
        if len(levels) != len(filter_levels):
            return None
        return levels[self.device_level] or None

    def reading(self, payload: bytes) -> bool | None:
        """True online, False offline, None for anything else (ignored)."""
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None
        if self.json_key is not None and text.startswith("{"):
            text = _json_value(text, self.json_key)
        if text == self.online:
            return True
        if text == self.offline:
            return False
        return None


def _json_value(text: str, key: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.strip() if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    name: str
    every: int  # seconds
    grace: int
    severity: str

    @property
    def deadline_ms(self) -> int:
        return (self.every + self.grace) * 1000


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    availability: tuple[AvailabilitySource, ...] = ()
    heartbeats: dict[str, Heartbeat] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.availability or self.heartbeats)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> PresenceSettings:
        """From the validated `presence` section (config/schema.py checked its shape)."""
        return cls(
            availability=tuple(_source(entry) for entry in cfg["availability"] or ()),
            heartbeats={
                name: Heartbeat(name, hb["every"], hb["grace"], hb["severity"])
                for name, hb in (cfg["heartbeats"] or {}).items()
            },
        )


def _source(entry: dict[str, Any]) -> AvailabilitySource:
    preset = Preset(entry["preset"])
    if preset is Preset.GENERIC:
        return AvailabilitySource(
            preset,
            entry["topic"],
            entry["offline"],
            entry["online"],
            entry.get("json_key"),
            entry["for"],
            entry["severity"],
        )
    default_base, pattern, offline, online, json_key = _PRESETS[preset]
    base = entry.get("base_topic")
    base = default_base if base is None else base
    prefix = base.rstrip("/")
    if preset is Preset.ESPHOME and prefix:
        prefix += "/"
    return AvailabilitySource(
        preset,
        pattern.format(base=prefix),
        offline,
        online,
        json_key,
        entry["for"],
        entry["severity"],
    )
