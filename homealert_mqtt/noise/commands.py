"""The noise-control commands over MQTT: `<base>/silence/<id>/set`, `.../expire` and
`<base>/alert/<id>/snooze`. Bad input is answered on `<base>/error` and changes nothing."""

from __future__ import annotations

import logging

from homealert_mqtt.clock import Clock
from homealert_mqtt.mqtt.link import Inbound
from homealert_mqtt.noise.matchers import Matcher
from homealert_mqtt.noise.runtime import SilenceRuntime
from homealert_mqtt.noise.silences import (
    SCHEDULE_ID,
    SILENCE_ID,
    BadSilence,
    Silence,
    parse_set,
    parse_snooze,
    snooze_id,
)
from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.topics import ID_PATTERN, Topics

_LOGGER = logging.getLogger(__name__)


class SilenceCommands:
    def __init__(
        self,
        runtime: SilenceRuntime,
        alerts: AlertStore,
        publisher: StatePublisher,
        topics: Topics,
        clock: Clock,
    ) -> None:
        self.runtime = runtime
        self.alerts = alerts
        self.publisher = publisher
        self.topics = topics
        self.clock = clock

    async def on_set(self, message: Inbound) -> None:
        silence_id = self.topics.middle_level(message.topic)
        try:
            silence = parse_set(silence_id, message.payload, self.clock())
        except BadSilence as err:
            await self.publisher.error(str(err), message.topic, message.payload)
            return
        await self.put(silence)

    async def put(self, silence: Silence) -> None:
        outcome = await self.runtime.put(silence)
        _LOGGER.info(
            "silence %s %s by %s until %s",
            silence.id,
            outcome,
            silence.created_by or "nobody named",
            silence.ends_at,
        )

    async def on_expire(self, message: Inbound) -> None:
        silence_id = self.topics.middle_level(message.topic)
        if not (SILENCE_ID.match(silence_id) or SCHEDULE_ID.match(silence_id)):
            await self.publisher.error(
                f"no silence {silence_id[:110]!r}", message.topic, message.payload
            )
            return
        # Idempotent: expiring one that is gone (or never was) changes nothing.
        timers = await self.runtime.store.timers(expire=silence_id)
        await self.runtime.after_timers(timers.started, timers.ended, timers.alerts)

    async def on_snooze(self, message: Inbound) -> None:
        alert_id = self.topics.middle_level(message.topic)
        try:
            snooze = parse_snooze(message.payload)
        except BadSilence as err:
            await self.publisher.error(str(err), message.topic, message.payload)
            return
        alert = await self.alerts.get_alert(alert_id) if ID_PATTERN.match(alert_id) else None
        if alert is None or not alert.state.is_open:
            reason = f"no alert {alert_id[:100]!r}" if alert is None else "it is resolved"
            await self.publisher.error(
                f"cannot snooze {alert_id[:100]!r}: {reason}", message.topic, message.payload
            )
            return
        now = self.clock()
        await self.put(
            Silence(
                snooze_id(alert_id),
                Matcher((("id", alert_id),)),
                now,
                now + snooze.seconds * 1000,
                snooze.by,
                "snoozed",
            )
        )
