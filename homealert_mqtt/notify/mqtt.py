"""MQTT channel: the rendered notification as JSON on `<base>/notify/<recipient>`.

Needs no credentials (it uses the service's own broker connection), which makes it the
natural channel for Home Assistant automations; enabled by default. A notification counts
as sent once the broker acknowledged it (PUBACK); while the broker is away it fails,
retryably, like any other channel whose server is down.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiomqtt
import voluptuous as vol

from homealert_mqtt.mqtt.link import BrokerRefusedError
from homealert_mqtt.notify.base import (
    TIMEOUT,
    ChannelContext,
    DeliveryError,
    Message,
    Publish,
    log_disabled,
)

NAME = "mqtt"
QOS = 1

SCHEMA = vol.Schema(
    {
        vol.Optional("enabled", default=True): bool,
        vol.Optional("timeout", default=10.0): TIMEOUT,
    }
)


@dataclass(frozen=True)
class MqttConfig:
    base_topic: str
    timeout: float


def create(section: dict[str, Any], ctx: ChannelContext) -> MqttChannel | None:
    section = SCHEMA(section)
    if reason := why_disabled(section):
        log_disabled(NAME, reason)
        return None
    return MqttChannel(MqttConfig(ctx.base_topic, section["timeout"]), ctx.publish)


def why_disabled(section: dict[str, Any]) -> str | None:
    """Why a validated section cannot send (it needs no credentials), or None."""
    return None if section["enabled"] else "enabled: false"


def notify_topic(base_topic: str, recipient: str) -> str:
    """`<base>/notify/<recipient>`; the recipient must be one safe topic level."""
    level = recipient.strip()
    if not level or len(level) > 64 or any(c in level for c in "/+#\0") or level.startswith("$"):
        raise DeliveryError(f"mqtt: not a topic level: {recipient[:64]!r}", retryable=False)
    return f"{base_topic}/notify/{level}"


class MqttChannel:
    name = NAME

    def __init__(self, config: MqttConfig, publish: Publish) -> None:
        self._config = config
        self._publish = publish

    async def send(self, recipient: str, message: Message) -> None:
        """`recipient` is the recipient group's name (recipients.groups.<name>)."""
        topic = notify_topic(self._config.base_topic, recipient)
        payload = json.dumps(
            {
                "action": "notify",  # a later {"action": "clear"} takes it down (clear.py)
                "subject": message.subject,
                "text": message.text,
                "priority": message.priority,
                "alert_ids": list(message.alert_ids),
                "recipient": recipient.strip(),
            },
            ensure_ascii=False,
        ).encode()
        try:
            async with asyncio.timeout(self._config.timeout):
                await self._publish(topic, payload, QOS, False)
        except BrokerRefusedError as err:
            raise DeliveryError(f"mqtt: {err}", retryable=False) from err
        except TimeoutError as err:
            raise DeliveryError("mqtt: no PUBACK from the broker in time", retryable=True) from err
        except (aiomqtt.MqttError, OSError) as err:
            # A lost broker connection comes back; the engine retries later.
            raise DeliveryError(f"mqtt: {type(err).__name__}: {err}", retryable=True) from err

    async def aclose(self) -> None:
        """The broker connection is the service's, not ours."""
