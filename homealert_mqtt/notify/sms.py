"""SMS through Twilio: the message's `short` text, at most 160 characters."""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from homealert_mqtt.notify.base import ChannelContext, Message, log_disabled
from homealert_mqtt.notify.twilio_client import (
    SCHEMA_KEYS,
    TwilioClient,
    TwilioConfig,
    check_number,
    missing_credentials,
)

NAME = "sms"

SCHEMA = vol.Schema(dict(SCHEMA_KEYS))


def create(section: dict[str, Any], ctx: ChannelContext) -> SmsChannel | None:
    del ctx
    section = SCHEMA(section)
    if reason := why_disabled(section):
        log_disabled(NAME, reason)
        return None
    return SmsChannel(TwilioConfig.from_section(section))


def why_disabled(section: dict[str, Any]) -> str | None:
    """Why a validated section cannot send, or None when it can."""
    if not section["enabled"]:
        return "enabled: false"
    return missing_credentials(NAME, section)


class SmsChannel:
    name = NAME

    def __init__(self, config: TwilioConfig) -> None:
        self._config = config
        self._twilio = TwilioClient(NAME, config)

    def __repr__(self) -> str:
        return f"SmsChannel({self._config!r})"

    async def send(self, recipient: str, message: Message) -> None:
        await self._twilio.send_sms(check_number(NAME, recipient), message.short)

    async def aclose(self) -> None:
        await self._twilio.aclose()
