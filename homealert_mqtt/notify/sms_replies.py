"""Acknowledge by SMS reply, without an open port: poll Twilio's message list.

Every `channels.sms.reply_ack.poll` seconds each replica lists the messages sent to our
number since yesterday (`GET .../Messages.json?To=<from_number>&DateSent>=<day>`). A
reply `ACK` (any case, optional trailing text) from a number that was paged acknowledges
what the last SMS to it was about; `ACK <code>` acknowledges the alert with that code.
Each reply is claimed in Redis before it is applied (sms_reply.lua), so it is applied
once whichever replica sees it first and whenever the service restarts. A reply from a
number never paged is logged and ignored: anyone can text a phone number.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from homealert_mqtt.clock import Clock
from homealert_mqtt.notify.base import DeliveryError
from homealert_mqtt.notify.sms import SCHEMA, why_disabled
from homealert_mqtt.notify.twilio_client import Reply, TwilioClient, TwilioConfig
from homealert_mqtt.pipeline.commands import CommandHandler
from homealert_mqtt.service import Service
from homealert_mqtt.store.reply_codes import ReplyCodes

_LOGGER = logging.getLogger(__name__)

LOOKBACK = timedelta(days=1)  # Twilio's DateSent filter is by day: yesterday on
CLAIM_MS = 60_000  # a reply being applied stays with its replica this long
# ACK, then maybe a word that may be a code (CODE_LENGTH of A-Z0-9), then anything.
_ACK = re.compile(r"^\s*ack\b[\s:,.!-]*(?P<code>[a-z0-9]{4}\b)?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Answer:
    code: str | None  # None: a bare ACK (what was last paged to that number)


def parse_reply(body: str) -> Answer | None:
    """`ACK`, `ack please`, `ACK 7K2Q`, `Ack: 7k2q thanks` -> an Answer; else None.
    The code is only a candidate: a 4-letter word may be text (the caller checks)."""
    found = _ACK.match(body)
    if found is None:
        return None
    code = found.group("code")
    return Answer(code.upper() if code else None)


def masked(number: str) -> str:
    """A phone number in logs: the last four digits."""
    return "…" + number[-4:] if len(number) > 4 else "…"


class ReplyPoller:
    def __init__(
        self,
        twilio: TwilioClient,
        codes: ReplyCodes,
        commands: CommandHandler,
        poll_seconds: float,
        clock: Clock,
    ) -> None:
        self.twilio = twilio
        self.codes = codes
        self.commands = commands
        self.poll_seconds = poll_seconds
        self.clock = clock

    async def run(self) -> None:
        try:
            while True:
                await self.poll_once()
                await asyncio.sleep(self.poll_seconds)
        finally:
            await self.twilio.aclose()

    async def poll_once(self) -> int:
        """Apply the new replies; returns how many this call applied."""
        since = datetime.fromtimestamp(self.clock() / 1000, UTC) - LOOKBACK
        try:
            replies = await self.twilio.list_replies(since)
        except DeliveryError as err:
            _LOGGER.warning("SMS replies not read this time: %s", err)
            return 0
        applied = 0
        for reply in reversed(replies):  # Twilio lists newest first; apply in order
            if reply.inbound and await self.codes.claim_reply(reply.sid, CLAIM_MS):
                await self._apply(reply)
                await self.codes.reply_done(reply.sid)
                applied += 1
        return applied

    async def _apply(self, reply: Reply) -> None:
        answer = parse_reply(reply.body)
        if answer is None:
            _LOGGER.info("SMS from %s is not an ACK; ignored", masked(reply.number))
            return
        paged = await self.codes.last_paged(reply.number)
        if paged is None:
            _LOGGER.warning(
                "SMS ACK from %s ignored: that number was never paged", masked(reply.number)
            )
            return
        if answer.code is None:
            targets = paged
        else:
            alert_id = await self.codes.alert_for(answer.code)
            if alert_id is None:
                _LOGGER.warning(
                    "SMS ACK %s from %s: no such code", answer.code, masked(reply.number)
                )
                return
            targets = [alert_id]
        by = f"sms:{reply.number}"
        for alert_id in targets:
            result = await self.commands.acknowledge(alert_id, by, "acknowledged by SMS reply")
            _LOGGER.info("SMS ACK from %s: %s %s", masked(reply.number), alert_id, result.outcome)


def add_sms_replies(service: Service) -> ReplyPoller | None:
    """The poller, when `channels.sms.reply_ack.enabled` and the SMS channel can send."""
    section = SCHEMA(dict(service.settings.channels.get("sms") or {}))
    reply_ack = section["reply_ack"]
    if not reply_ack["enabled"] or why_disabled(section):
        return None  # the sms channel already warned if it is disabled
    poller = ReplyPoller(
        TwilioClient("sms replies", TwilioConfig.from_section(section)),
        ReplyCodes(service.store, service.clock),
        service.commands,
        reply_ack["poll"],
        service.clock,
    )
    service.add_task(poller.run)
    return poller
