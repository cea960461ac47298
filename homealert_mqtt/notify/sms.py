"""SMS through Twilio: the message's `short` text, at most 160 characters.

With `reply_ack` on, each SMS ends with `Reply ACK <code>` (the code of its first open
alert, see store/reply_codes.py), and the number is remembered as paged for those alerts;
notify/sms_replies.py reads the answers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import voluptuous as vol
from redis.exceptions import RedisError

from homealert_mqtt.notify.base import ChannelContext, DeliveryError, Message, log_disabled
from homealert_mqtt.notify.twilio_client import (
    SCHEMA_KEYS,
    TwilioClient,
    TwilioConfig,
    check_number,
    missing_credentials,
)

if TYPE_CHECKING:
    from homealert_mqtt.store.reply_codes import ReplyCodes

_LOGGER = logging.getLogger(__name__)

NAME = "sms"
SMS_CHARS = 160

REPLY_ACK = vol.Schema(
    {
        vol.Optional("enabled", default=False): bool,
        vol.Optional("poll", default=20): vol.All(vol.Coerce(float), vol.Range(min=0.1, max=3600)),
    }
)

SCHEMA = vol.Schema({**SCHEMA_KEYS, vol.Optional("reply_ack", default={}): REPLY_ACK})


def create(section: dict[str, Any], ctx: ChannelContext) -> SmsChannel | None:
    section = SCHEMA(section)
    if reason := why_disabled(section):
        log_disabled(NAME, reason)
        return None
    codes = ctx.reply_codes if section["reply_ack"]["enabled"] else None
    return SmsChannel(TwilioConfig.from_section(section), codes)


def with_reply_code(text: str, code: str) -> str:
    """`text` cut to leave room for ` Reply ACK <code>` within one SMS."""
    suffix = f" Reply ACK {code}"
    room = SMS_CHARS - len(suffix)
    body = text if len(text) <= room else text[: room - 1].rstrip() + "…"
    return body + suffix


def why_disabled(section: dict[str, Any]) -> str | None:
    """Why a validated section cannot send, or None when it can."""
    if not section["enabled"]:
        return "enabled: false"
    return missing_credentials(NAME, section)


class SmsChannel:
    name = NAME

    def __init__(self, config: TwilioConfig, codes: ReplyCodes | None = None) -> None:
        self._config = config
        self._twilio = TwilioClient(NAME, config)
        self._codes = codes

    def __repr__(self) -> str:
        return f"SmsChannel({self._config!r})"

    async def send(self, recipient: str, message: Message) -> None:
        number = check_number(NAME, recipient)
        if self._codes is None:
            await self._twilio.send_sms(number, message.short)
            return
        try:
            codes = await self._codes.assign(message.alert_ids)
        except RedisError as err:
            raise DeliveryError(
                f"{NAME}: reply code: {type(err).__name__}", retryable=True
            ) from err
        open_ids = [i for i, c in zip(message.alert_ids, codes, strict=False) if c]
        first = next((c for c in codes if c), None)
        body = with_reply_code(message.short, first) if first else message.short
        await self._twilio.send_sms(number, body)
        if open_ids:
            try:
                await self._codes.paged(number, open_ids)
            except RedisError:
                # Sent: not worth a second SMS. Only a bare "ACK" to this one is lost.
                _LOGGER.warning("sms: could not record what was paged to a number (Redis)")

    async def aclose(self) -> None:
        await self._twilio.aclose()
