"""Flapping (`alerts.types.<type>.flapping: {reopens, window}`): an alert re-opened
`reopens` times within `window` seconds gets `flapping: true` and notifies nobody until
it has stayed put for a whole window; then it pages once with its current state.

ingest.lua counts the re-openings and pushes the flap's end back on every change;
flap_settle.lua ends flaps that are due (a Redis timer, claimed atomically)."""

from __future__ import annotations

import json

from homealert_mqtt.clock import Clock
from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.store.alert_store import AlertStore, alert_from_json

LIMIT = 200


class FlapSettle:
    def __init__(self, alerts: AlertStore, publisher: StatePublisher, clock: Clock) -> None:
        self.alerts = alerts
        self.publisher = publisher
        self.clock = clock

    async def tick(self) -> int | None:
        """End the flaps that are due; returns when the next one is (ms), if any."""
        raw = json.loads(
            await self.alerts.scripts.flap_settle(
                keys=[self.alerts.keys.prefix], args=[self.clock(), LIMIT]
            )
        )
        for alert in map(alert_from_json, raw["alerts"]):
            if alert is not None:
                await self.publisher.alert(alert)
        return int(raw["next"]) if raw["next"] else None
