"""Every notification channel, by the name the configuration uses for it.

Adding a channel: write one module exposing `SCHEMA` and `create(section, ctx)` (see
base.ChannelModule) and add one line to `_MODULES`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from homealert_mqtt.notify import apprise_channel, email, mqtt, phone, slack, sms
from homealert_mqtt.notify.base import Channel, ChannelContext, ChannelModule

_LOGGER = logging.getLogger(__name__)

_MODULES: dict[str, ChannelModule] = {
    "email": email,
    "slack": slack,
    "sms": sms,
    "phone": phone,
    "mqtt": mqtt,
    "apprise": apprise_channel,
}

# Channels that are off unless asked for: left off, they are not worth a warning, and
# "will send nothing" would only be noise.
OPT_IN = frozenset({"apprise"})

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
    if set(_MODULES) - set(channels) <= OPT_IN:
        _LOGGER.info("%s", summary(set(channels)))
    else:
        _LOGGER.warning(
            "%s (why: the warnings above, or `homealert-mqtt check-config`)", summary(set(channels))
        )
    return channels


def summary(enabled: set[str]) -> str:
    """One plain sentence: which channels notify people, which were left out."""
    off = [name for name in _MODULES if name not in enabled and name not in OPT_IN]
    on = [name for name in _MODULES if name in enabled]
    if not on:
        return "no notification channel can send: alerts are tracked, but nobody is notified"
    if not off:
        return f"notifications go out on {', '.join(on)}"
    return f"notifications go out on {', '.join(on)} only; {', '.join(off)} will send nothing"


def disabled_channels(channels_config: Mapping[str, Any]) -> dict[str, str]:
    """Channel name -> why it will not send, for the channels that will not (what
    create_channels warns about at start; check-config prints it beforehand)."""
    reasons = {}
    for name, module in _MODULES.items():
        section = module.SCHEMA(dict(channels_config.get(name) or {}))
        if name in OPT_IN and not section["enabled"]:
            continue
        if reason := module.why_disabled(section):
            reasons[name] = reason
    return reasons


def enabled_channels(channels_config: Mapping[str, Any]) -> set[str]:
    """The channels that will send (what create_channels would create)."""
    names = set()
    for name, module in _MODULES.items():
        section = module.SCHEMA(dict(channels_config.get(name) or {}))
        if not module.why_disabled(section):
            names.add(name)
    return names


async def close_channels(channels: Mapping[str, Channel]) -> None:
    """Close every channel, one after the other (each close is quick and local)."""
    for channel in channels.values():
        await channel.aclose()
