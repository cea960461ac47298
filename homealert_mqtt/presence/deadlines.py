"""Deadlines that passed: claimed in Redis, raised (or resolved) through the ingest path.

Any replica may claim a record; presence.lua hands each action to one of them and gives
it back after the lease if that replica dies before it is done. The alert goes through
ingest.lua like a device's own, so deduplication, grouping, priorities and escalation
apply; carrying out a claim again (after a crash) meets the open alert and is a repeat.
A Redis blip is retried where it happens (transient.retry_transient), not left to the
lease: a deadline that passed during a Redis restart raises as soon as Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from homealert_mqtt.clock import Clock
from homealert_mqtt.config.settings import AlertSettings
from homealert_mqtt.escalation.plan import Start
from homealert_mqtt.models import IncomingAlert, Priority, iso
from homealert_mqtt.pipeline.ingest import store_request
from homealert_mqtt.pipeline.jsontext import compact
from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.store.presence_store import Claim, Kind, PresenceStore
from homealert_mqtt.transient import Outage, retry_transient

_LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # a deadline raises within this (plus the work) of passing
CLAIM_LIMIT = 100

ALERT_TYPES = {Kind.DEVICE: "device_offline", Kind.HEARTBEAT: "heartbeat_missed"}


@dataclass
class Deadlines:
    presence: PresenceStore
    alerts: AlertStore
    publisher: StatePublisher
    settings: AlertSettings
    start_plan: Callable[[], Mapping[Priority, Start]]  # read late: escalation sets it
    lease_ms: int
    clock: Clock
    changed: Callable[[], None]
    outage: Outage = field(default_factory=lambda: Outage("Redis"))

    async def run(self) -> None:
        while True:
            claims, first = await retry_transient(
                lambda: self.presence.claim_due(self.lease_ms, CLAIM_LIMIT),
                self.outage,
                where="presence",
            )
            for claim in claims:
                await self._carry_out(claim)
            if claims:
                self.changed()
            if len(claims) < CLAIM_LIMIT:
                await self._sleep(first)

    async def _sleep(self, first: int | None) -> None:
        wait = POLL_SECONDS
        if first is not None:
            wait = min(wait, max(0.0, (first - self.clock()) / 1000))
        await asyncio.sleep(wait)

    async def _carry_out(self, claim: Claim) -> None:
        alert, attributes = incoming(claim)
        request = store_request(alert, compact(attributes), self.settings, self.start_plan())
        [result] = await retry_transient(
            lambda: self.alerts.ingest_many([request]), self.outage, where="presence"
        )
        if result.outcome == "failed":
            _LOGGER.error("presence: storing %s failed: %s", claim.member, result.reason)
        elif result.alert is not None:
            await self.publisher.alert(result.alert, result.events)
            if result.group is not None:
                await self.publisher.group(result.group)
        # no_open_alert (a resolve after someone resolved it by hand) is as good as done
        await retry_transient(lambda: self.presence.done(claim), self.outage, where="presence")
        _LOGGER.info(
            "presence: %s %s (%s)", ALERT_TYPES[claim.kind], claim.action, claim.details.name
        )


def incoming(claim: Claim) -> tuple[IncomingAlert, dict[str, Any]]:
    """The alert a claim raises or resolves; the same attributes either way, so both
    have the same fingerprint."""
    details = claim.details
    attributes: dict[str, Any] = {"topic": details.topic}
    if claim.kind is Kind.DEVICE:
        attributes["device"] = details.name
        what = f"{details.name} is " + ("offline" if claim.action == "raise" else "back online")
        if claim.action == "raise" and claim.since is not None:
            what += f" since {iso(claim.since)}"
    else:
        attributes["heartbeat"] = details.name
        last = f"last one {iso(claim.last_seen)}" if claim.last_seen is not None else "none yet"
        what = (
            f"no heartbeat from {details.name} ({last})"
            if claim.action == "raise"
            else f"{details.name} is beating again"
        )
    alert = IncomingAlert(
        source=details.source,
        type=ALERT_TYPES[claim.kind],
        severity=details.severity or None,
        explicit_priority=None,
        message=what,
        status="firing" if claim.action == "raise" else "resolved",
        # The device's own topic: one alert per device (names may repeat across presets),
        # and the resolve finds it whatever `alerts.deduplication.attributes` says.
        dedup_key=f"{ALERT_TYPES[claim.kind]}:{details.topic}"[:255],
        attributes=attributes,
        timestamp_ms=None,
    )
    return alert, attributes
