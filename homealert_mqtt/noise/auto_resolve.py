"""Alerts that resolve themselves (`alerts.types.<type>.auto_resolve`): for sensors that
never say "resolved". The deadlines are a Redis timer (auto_resolve.lua claims them)."""

from __future__ import annotations

import json

from homealert_mqtt.clock import Clock
from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.store.alert_store import AlertStore, alert_from_json, group_from_json

LIMIT = 200


class AutoResolve:
    def __init__(self, alerts: AlertStore, publisher: StatePublisher, clock: Clock) -> None:
        self.alerts = alerts
        self.publisher = publisher
        self.clock = clock

    async def tick(self) -> int | None:
        """Resolve what is due; returns when the next deadline is (ms), if any."""
        raw = json.loads(
            await self.alerts.scripts.auto_resolve(
                keys=[self.alerts.keys.prefix],
                args=[self.clock(), self.alerts.lua_settings, LIMIT],
            )
        )
        for item in raw["alerts"]:
            alert = alert_from_json(item["alert"])
            if alert is not None:
                await self.publisher.alert(alert, ["resolved"])
            group = group_from_json(item["group"])
            if group is not None:
                await self.publisher.group(group)
        return int(raw["next"]) if raw["next"] else None
