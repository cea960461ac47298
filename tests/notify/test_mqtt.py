"""MQTT channel: what it hands to the service's publish callable."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiomqtt
import pytest

from homealert_mqtt.notify import mqtt
from homealert_mqtt.notify.base import ChannelContext, DeliveryError, Message


class Published:
    """The service side of ChannelContext.publish, recording its calls."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, bytes, int, bool]] = []
        self.error = error

    async def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.calls.append((topic, payload, qos, retain))
        if self.error is not None:
            raise self.error


async def test_publishes_json_to_the_recipient_topic(message: Message) -> None:
    published = Published()
    channel = mqtt.create({}, ChannelContext(published, "home/alerts"))
    assert channel is not None

    await channel.send("oncall", message)

    [(topic, payload, qos, retain)] = published.calls
    assert (topic, qos, retain) == ("home/alerts/notify/oncall", 1, False)
    assert json.loads(payload) == {
        "action": "notify",
        "subject": message.subject,
        "text": message.text,
        "priority": "P1",
        "alert_ids": ["nas_disk"],
        "recipient": "oncall",
    }


@pytest.mark.parametrize("recipient", ["", "a/b", "+", "#", "$SYS", "x" * 65])
async def test_recipient_must_be_one_topic_level(message: Message, recipient: str) -> None:
    published = Published()
    channel = mqtt.create({}, ChannelContext(published, "homealert"))
    assert channel is not None

    with pytest.raises(DeliveryError) as caught:
        await channel.send(recipient, message)

    assert not caught.value.retryable
    assert published.calls == []


async def test_broker_trouble_is_retryable(message: Message) -> None:
    published = Published(aiomqtt.MqttError("Disconnected during message iteration"))
    channel = mqtt.create({"timeout": 1}, ChannelContext(published, "homealert"))
    assert channel is not None

    with pytest.raises(DeliveryError) as caught:
        await channel.send("oncall", message)

    assert caught.value.retryable


def test_disabled(our_warnings: Callable[[], list[str]]) -> None:
    assert mqtt.create({"enabled": False}, ChannelContext(Published(), "homealert")) is None
    [warning] = our_warnings()
    assert "mqtt" in warning
