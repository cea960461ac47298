"""What comes in: availability messages and heartbeats, recorded in Redis.

Every replica reads every availability message (the subscription is not shared, so the
retained ones are replayed to each): recording the same observation twice changes
nothing (presence.lua keeps the first offline time), so a repeat is harmless.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from homealert_mqtt.mqtt.link import Inbound
from homealert_mqtt.presence.config import AvailabilitySource, Heartbeat
from homealert_mqtt.store.presence_store import Details, Event, Kind, PresenceStore

_LOGGER = logging.getLogger(__name__)

MAX_DEVICE_CHARS = 128
_NOT_SOURCE = re.compile(r"[^A-Za-z0-9_.-]+")

ReportError = Callable[[str, str, bytes], Awaitable[None]]  # (reason, topic, payload)


def source_for(device: str) -> str:
    """The alert's `source` for a device name: what alert sources allow, at most 64."""
    return _NOT_SOURCE.sub("_", device).strip("_")[:64] or "device"


class AvailabilityWatcher:
    """One `presence.availability` entry: its messages to presence records."""

    def __init__(
        self, source: AvailabilitySource, store: PresenceStore, changed: Callable[[], None]
    ) -> None:
        self.source = source
        self.store = store
        self.changed = changed
        # Last state recorded per device by this replica: a replay of the same state (a
        # broker reconnect re-sends every retained message) costs no Redis call.
        self._known: dict[str, bool] = {}

    async def handle(self, message: Inbound) -> None:
        device = self.source.device(message.topic)
        if device is None:
            return
        device = device[:MAX_DEVICE_CHARS]
        if not message.payload:
            # The retained topic was cleared: the device was removed (Zigbee2MQTT does so).
            # Forgotten unless an alert for it is open (its `online` resolves that).
            self._known.pop(device, None)
            if await self.store.forget(Kind.DEVICE, device):
                self.changed()
            return
        online = self.source.reading(message.payload)
        if online is None:
            _LOGGER.debug("availability %s: payload not understood", message.topic)
            return
        if self._known.get(device) is online:
            return
        details = Details(device, source_for(device), self.source.severity, message.topic)
        event = Event.ONLINE if online else Event.OFFLINE
        delay_ms = self.source.offline_for * 1000
        if await self.store.observe(Kind.DEVICE, event, delay_ms, details):
            self.changed()
        self._known[device] = online


class HeartbeatWatcher:
    """`<base>/heartbeat/<name>`: each message is a beat of that configured heartbeat."""

    def __init__(
        self,
        heartbeats: dict[str, Heartbeat],
        store: PresenceStore,
        changed: Callable[[], None],
        report_error: ReportError,
        topic_prefix: str,
    ) -> None:
        self.heartbeats = heartbeats
        self.store = store
        self.changed = changed
        self.report_error = report_error
        self.prefix = topic_prefix  # "<base>/heartbeat/"

    def details(self, heartbeat: Heartbeat) -> Details:
        return Details(
            heartbeat.name, heartbeat.name, heartbeat.severity, self.prefix + heartbeat.name
        )

    async def watch_all(self) -> None:
        """At start: a heartbeat never seen is due `every + grace` from now; a known one
        keeps its deadline (one that passed while the service was down raises at once).
        One no longer configured is forgotten, unless its alert is open."""
        for entry in await self.store.entries():
            if entry.kind is Kind.HEARTBEAT and entry.name not in self.heartbeats:
                await self.store.forget(Kind.HEARTBEAT, entry.name)
        for heartbeat in self.heartbeats.values():
            await self.store.observe(
                Kind.HEARTBEAT, Event.WATCH, heartbeat.deadline_ms, self.details(heartbeat)
            )
        self.changed()

    async def handle(self, message: Inbound) -> None:
        name = message.topic[len(self.prefix) :]
        heartbeat = self.heartbeats.get(name)
        if heartbeat is None:
            known = ", ".join(sorted(self.heartbeats)) or "none"
            await self.report_error(
                f"unknown heartbeat {name[:64]!r} (presence.heartbeats has: {known[:200]})",
                message.topic,
                message.payload,
            )
            return
        if message.retain:
            # Replayed on every subscribe, it would count as a beat each time.
            await self.report_error(
                "retained heartbeats are not accepted (publish without retain)",
                message.topic,
                message.payload,
            )
            return
        await self.store.observe(
            Kind.HEARTBEAT, Event.BEAT, heartbeat.deadline_ms, self.details(heartbeat)
        )
        self.changed()
