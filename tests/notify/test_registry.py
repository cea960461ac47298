"""The registry: schemas by name, and building channels from the config."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import voluptuous as vol

from homealert_mqtt.notify.base import ChannelContext
from homealert_mqtt.notify.registry import CHANNEL_SCHEMAS, close_channels, create_channels


async def _publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    """Nothing to do: no channel publishes here."""


CTX = ChannelContext(_publish, "homealert")


def test_schemas_by_name() -> None:
    assert set(CHANNEL_SCHEMAS) == {"email", "slack", "sms", "phone", "mqtt", "apprise"}
    for name, schema in CHANNEL_SCHEMAS.items():
        assert schema({})["enabled"] is (name != "apprise"), name  # apprise is opt-in
        with pytest.raises(vol.Invalid):
            schema({"no_such_key": 1})


async def test_shipped_defaults_leave_only_mqtt(our_warnings: Callable[[], list[str]]) -> None:
    channels = create_channels({}, CTX)

    assert list(channels) == ["mqtt"]
    warnings = our_warnings()
    assert len(warnings) == 5  # one per channel without credentials, and what that means
    for name in ("email", "slack", "sms", "phone"):
        assert sum(f"channel {name} " in w for w in warnings) == 1
    assert warnings[-1].startswith("notifications go out on mqtt only;")
    await close_channels(channels)


async def test_configured_channels_are_created(
    our_warnings: Callable[[], list[str]],
) -> None:
    twilio = {"account_sid": "AC1", "auth_token": "t", "from_number": "+15005550006"}
    config = {
        "email": {"smtp_server": "127.0.0.1", "username": None},
        "slack": {"webhook_url": "http://127.0.0.1:9/services/a/b/c"},
        "sms": twilio,
        "phone": twilio,
        "mqtt": {"enabled": False},
        "pager": {},
    }

    channels = create_channels(config, CTX)

    assert set(channels) == {"email", "slack", "sms", "phone"}
    assert all(channel.name == name for name, channel in channels.items())
    assert len(our_warnings()) == 3  # mqtt disabled, "pager" unknown, and the summary
    await close_channels(channels)
