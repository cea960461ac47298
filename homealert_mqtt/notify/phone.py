"""Phone calls through Twilio: the message's `voice` text, spoken with TwiML <Say>."""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from twilio.twiml.voice_response import VoiceResponse

from homealert_mqtt.notify.base import ChannelContext, Message, log_disabled
from homealert_mqtt.notify.twilio_client import (
    SCHEMA_KEYS,
    TwilioClient,
    TwilioConfig,
    check_number,
    missing_credentials,
)

NAME = "phone"

SCHEMA = vol.Schema(
    {
        **SCHEMA_KEYS,
        # BCP 47 tag Twilio's <Say> understands, e.g. en-US, de-DE, fr-FR.
        vol.Optional("voice_language", default="en-US"): vol.All(
            str, vol.Match(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
        ),
    }
)


def create(section: dict[str, Any], ctx: ChannelContext) -> PhoneChannel | None:
    del ctx
    section = SCHEMA(section)
    if reason := why_disabled(section):
        log_disabled(NAME, reason)
        return None
    return PhoneChannel(TwilioConfig.from_section(section), section["voice_language"])


def twiml(text: str, language: str) -> str:
    """`<Response><Say language=...>text</Say></Response>`; VoiceResponse escapes XML."""
    response = VoiceResponse()
    response.say(text, language=language)
    return str(response)


def why_disabled(section: dict[str, Any]) -> str | None:
    """Why a validated section cannot send, or None when it can."""
    if not section["enabled"]:
        return "enabled: false"
    return missing_credentials(NAME, section)


class PhoneChannel:
    name = NAME

    def __init__(self, config: TwilioConfig, voice_language: str) -> None:
        self._config = config
        self._language = voice_language
        self._twilio = TwilioClient(NAME, config)

    def __repr__(self) -> str:
        return f"PhoneChannel({self._config!r}, voice_language={self._language!r})"

    async def send(self, recipient: str, message: Message) -> None:
        await self._twilio.place_call(
            check_number(NAME, recipient), twiml(message.voice, self._language)
        )

    async def aclose(self) -> None:
        await self._twilio.aclose()
