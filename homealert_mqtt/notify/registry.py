"""Every notification channel, by the name the configuration uses for it.

Adding a channel: write one module exposing `SCHEMA` and `create(section, ctx)` (see
base.ChannelModule) and add one line to `_MODULES`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from homealert_mqtt.notify import email, mqtt, phone, slack, sms
from homealert_mqtt.notify.base import Channel, ChannelContext, ChannelModule

_LOGGER = logging.getLogger(__name__)

_MODULES: dict[str, ChannelModule] = {
    "email": email,
    "slack": slack,
    "sms": sms,
    "phone": phone,
    "mqtt": mqtt,
}

# channel name -> voluptuous schema of its `channels.<name>` section
CHANNEL_SCHEMAS: dict[str, Any] = {name: module.SCHEMA for name, module in _MODULES.items()}


def create_channels(channels_config: Mapping[str, Any], ctx: ChannelContext) -> dict[str, Channel]:
    """The enabled, usable channels by name.

    Every known channel is considered, also one absent from `channels_config` (its
    defaults apply). A disabled or credential-less channel logs one warning and is left
    out. An invalid section raises voluptuous.Invalid: validate the config first.
    """
    for unknown in sorted(set(channels_config) - set(_MODULES)):
        _LOGGER.warning("unknown notification channel %r ignored", unknown)
    channels: dict[str, Channel] = {}
    for name, module in _MODULES.items():
        channel = module.create(dict(channels_config.get(name) or {}), ctx)
        if channel is not None:
            channels[name] = channel
    return channels


async def close_channels(channels: Mapping[str, Channel]) -> None:
    """Close every channel, one after the other (each close is quick and local)."""
    for channel in channels.values():
        await channel.aclose()
