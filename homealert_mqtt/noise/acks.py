"""Acknowledgements that do not go stale (`alerts.escalation.ack_timeout`): an alert
still open that long after its acknowledgement goes back to `active` (event
`unacknowledged`) and escalates from level 0. Checked by ack_timeout.lua, one atomic
step that any replica may run: each stale ack is taken once."""

from __future__ import annotations

import json

from homealert_mqtt.clock import Clock
from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.store.alert_store import AlertStore, alert_from_json

CHECK_MS = 1000  # how often the acknowledged alerts are looked at, at most


class AckTimeouts:
    def __init__(
        self, alerts: AlertStore, publisher: StatePublisher, timeout_s: int, clock: Clock
    ) -> None:
        self.alerts = alerts
        self.publisher = publisher
        self.timeout_ms = timeout_s * 1000
        self.clock = clock
        self._next_check = 0

    async def tick(self) -> None:
        """Let the stale acknowledgements go, when one may be due."""
        now = self.clock()
        if not self.timeout_ms or now < self._next_check:
            return
        raw = json.loads(
            await self.alerts.scripts.ack_timeout(
                keys=[self.alerts.keys.prefix],
                args=[now, self.alerts.lua_settings, self.timeout_ms],
            )
        )
        # Acks made meanwhile go stale a whole timeout later: looking again after
        # CHECK_MS (or at the next one due, if sooner) misses none by more than that.
        upcoming = int(raw["next"]) if raw["next"] else now + CHECK_MS
        self._next_check = min(upcoming, now + CHECK_MS)
        for alert in map(alert_from_json, raw["alerts"]):
            if alert is not None:
                await self.publisher.alert(alert, ["unacknowledged"])
