"""Presence tests: availability messages as each firmware publishes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.probe import Probe


@dataclass(frozen=True)
class Firmware:
    """One preset: its config entry (under the test's prefix) and what it publishes."""

    name: str
    entry: dict[str, Any]
    topic: str  # with {prefix} and {device}
    offline: bytes
    online: bytes

    def config(self, prefix: str, **extra: Any) -> dict[str, Any]:
        entry = {**self.entry, **extra}
        for key in ("base_topic", "topic"):
            if key in entry:
                entry[key] = entry[key].format(prefix=prefix)
        return entry

    def topic_of(self, prefix: str, device: str) -> str:
        return self.topic.format(prefix=prefix, device=device)


FIRMWARES = [
    Firmware(
        "zigbee2mqtt-json",
        {"preset": "zigbee2mqtt", "base_topic": "{prefix}z2m"},
        "{prefix}z2m/{device}/availability",
        b'{"state":"offline"}',
        b'{"state":"online"}',
    ),
    Firmware(
        "zigbee2mqtt-legacy",
        {"preset": "zigbee2mqtt", "base_topic": "{prefix}z2m"},
        "{prefix}z2m/{device}/availability",
        b"offline",
        b"online",
    ),
    Firmware(
        "tasmota",
        {"preset": "tasmota", "base_topic": "{prefix}tele"},
        "{prefix}tele/{device}/LWT",
        b"Offline",
        b"Online",
    ),
    Firmware(
        "esphome",
        {"preset": "esphome", "base_topic": "{prefix}esp"},
        "{prefix}esp/{device}/status",
        b"offline",
        b"online",
    ),
    Firmware(
        "shelly",
        {"preset": "shelly", "base_topic": "{prefix}shellies"},
        "{prefix}shellies/{device}/online",
        b"false",
        b"true",
    ),
    Firmware(
        "generic-json",
        {
            "preset": "generic",
            "topic": "{prefix}gen/+/connection",
            "offline": "lost",
            "online": "ok",
            "json_key": "status",
        },
        "{prefix}gen/{device}/connection",
        b'{"status": "lost", "rssi": -80}',
        b'{"status": "ok", "rssi": -60}',
    ),
]


async def clear_retained(probe: Probe, topics: list[str]) -> None:
    """Retained messages outlive the test on the shared broker: remove them."""
    for topic in topics:
        await probe.publish(topic, b"", retain=True)


def created(probe: Probe, alert_type: str, source: str) -> list[Any]:
    return [e for e in probe.events("created") if e["type"] == alert_type and e["source"] == source]
