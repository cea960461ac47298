"""Close the loop: when an alert is acknowledged or resolved, however that happened (a
Home Assistant button, the CLI, an SMS reply, a device's `resolved`, presence), every
recipient group the `mqtt` channel paged about it gets
`{"action": "clear", "alert_ids": [...]}` on `<base>/notify/<group>`, so that whatever
put the page on a screen can take it down. (The shipped notify_phone blueprint clears its
phone notification from `<base>/event` already.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import aiomqtt

from homealert_mqtt.models import AlertRecord, State
from homealert_mqtt.notify.base import DeliveryError, Publish
from homealert_mqtt.notify.mqtt import NAME as MQTT_CHANNEL
from homealert_mqtt.notify.mqtt import QOS, notify_topic
from homealert_mqtt.pipeline.publish import StateListener
from homealert_mqtt.store.escalation_store import EscalationStore

_LOGGER = logging.getLogger(__name__)

CLOSING = {"acknowledged": State.ACKNOWLEDGED, "resolved": State.RESOLVED}


def clear_payload(alert_ids: Sequence[str], recipient: str, reason: str) -> bytes:
    body = {"action": "clear", "alert_ids": list(alert_ids), "recipient": recipient}
    return json.dumps({**body, "reason": reason}, ensure_ascii=False).encode()


class ClearPaged(StateListener):
    def __init__(self, store: EscalationStore, base_topic: str, publish: Publish) -> None:
        self.store = store
        self.base_topic = base_topic
        self._publish = publish

    async def alert_changed(self, alert: AlertRecord, events: Sequence[str]) -> None:
        reason = next((e for e in events if CLOSING.get(e) is alert.state), None)
        if reason is None:
            return
        for channel, recipient in await self.store.paged(alert.id):
            if channel != MQTT_CHANNEL:
                continue
            try:
                topic = notify_topic(self.base_topic, recipient)
                await self._publish(topic, clear_payload([alert.id], recipient, reason), QOS, False)
            except (DeliveryError, aiomqtt.MqttError, OSError) as err:
                # Best effort: the page stays on screen until its next update.
                _LOGGER.warning("clear for %s not published: %s", alert.id, err)
