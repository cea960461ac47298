"""Every page the recording servers received, as (alert, level, channel, recipient) with
its arrival time: what the storm and fault tests count and time.

The storm policies page one recipient group per level (oncall, manager, director), so
the recipient tells the level; the default template names the alert id in every channel.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tests.escalation.conftest import PEOPLE
from tests.escalation.process import TimedRecorder
from tests.notify.conftest import SmtpRecorder

CHANNELS = ("email", "slack", "sms", "phone")
LEVEL_GROUPS = ("oncall", "manager", "director")


@dataclass(frozen=True, slots=True)
class Page:
    alert_id: str
    level: int
    channel: str
    recipient: str
    at: float  # wall clock, seconds

    @property
    def key(self) -> tuple[str, int, str, str]:
        return (self.alert_id, self.level, self.channel, self.recipient)


def _level_of(recipient: str) -> int:
    for level, group in enumerate(LEVEL_GROUPS):
        if recipient in PEOPLE[group]:
            return level
    raise AssertionError(f"a page to nobody of the policy: {recipient!r}")


def pages(smtp: SmtpRecorder, http: TimedRecorder, ids: set[str]) -> list[Page]:
    """One Page per (alert named in the message, recipient) that arrived."""
    found: list[Page] = []

    def add(channel: str, recipient: str, text: str, at: float) -> None:
        named = {i for i in ids if i in text}
        assert named, f"a {channel} page names none of the alerts: {text[:300]!r}"
        found.extend(Page(i, _level_of(recipient), channel, recipient, at) for i in named)

    for message, (_sender, rcpts), at in zip(
        list(smtp.messages), list(smtp.envelopes), list(smtp.received_at), strict=False
    ):
        body = message.get_body(("plain",))
        text = f"{message['Subject']}\n{body.get_content() if body is not None else ''}"
        for recipient in rcpts:
            add("email", recipient, text, at)
    for arrival in list(http.arrivals):
        if arrival.path.startswith("/slack"):
            # Posted to the priority's channel; the recipient is the first mention.
            add("slack", arrival.body.split(" ", 1)[0], arrival.body, arrival.at)
        elif arrival.path.endswith("/Messages.json"):
            add("sms", arrival.to, arrival.body, arrival.at)
        elif arrival.path.endswith("/Calls.json"):
            # The voice block spells the id out for the speech engine: "Alert I D <id>".
            add("phone", arrival.to, arrival.body, arrival.at)
    return found


def address(group: str, channel: str) -> str:
    mail, handle, tel = PEOPLE[group]
    return {"email": mail, "slack": handle, "sms": tel, "phone": tel}[channel]


def expected(ids: set[str], levels: int) -> set[tuple[str, int, str, str]]:
    return {
        (i, level, channel, address(LEVEL_GROUPS[level], channel))
        for i in ids
        for level in range(levels)
        for channel in CHANNELS
    }


def doubled(found: list[Page]) -> dict[tuple[str, int, str, str], int]:
    counts = Counter(p.key for p in found)
    return {k: n for k, n in counts.items() if n > 1}
