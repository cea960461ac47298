"""The retained `<base>/presence`: every watched device and heartbeat, and how it is.

`{"<name>": {"name", "state": "ok"|"offline"|"late", "kind": "device"|"heartbeat",
"last_seen": ISO or null, "since": ISO or null}}`. `offline` (a device) and `late` (a
heartbeat) from the moment their alert is raised until it is resolved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from homealert_mqtt.models import iso
from homealert_mqtt.pipeline.publish import Publish, StateListener, dumps
from homealert_mqtt.store.presence_store import Entry, Kind, PresenceStore

_LOGGER = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.5  # a replay of 2,000 availability messages makes one publish
MAX_ENTRIES = 10_000  # bounds the payload (~1 MB)


def presence_payload(entries: Sequence[Entry]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for entry in sorted(entries, key=lambda e: (e.kind.value, e.name))[:MAX_ENTRIES]:
        device = entry.kind is Kind.DEVICE
        state = ("offline" if device else "late") if entry.raised else "ok"
        body[entry.name] = {
            "name": entry.name,  # for templates that list the values (HA's sensor)
            "state": state,
            "kind": "device" if device else "heartbeat",
            "last_seen": iso(entry.last_seen) if entry.last_seen is not None else None,
            "since": iso(entry.since) if entry.since is not None and entry.raised else None,
        }
    return body


class PresenceTopic(StateListener):
    """Publishes after changes, at most every DEBOUNCE_SECONDS; again after a resync."""

    def __init__(self, topic: str, store: PresenceStore, publish: Publish) -> None:
        self.topic = topic
        self.store = store
        self._publish = publish
        self._due = asyncio.Event()

    def changed(self) -> None:
        self._due.set()

    async def resynced(self, alert_ids: Sequence[str]) -> None:
        self._due.set()

    async def run(self) -> None:
        while True:
            await self._due.wait()
            await asyncio.sleep(DEBOUNCE_SECONDS)
            self._due.clear()
            try:
                payload = presence_payload(await self.store.entries())
                await self._publish(self.topic, dumps(payload), 1, True)
            except Exception:
                self._due.set()
                raise
