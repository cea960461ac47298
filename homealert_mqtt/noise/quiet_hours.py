"""Quiet hours per recipient group (`recipients.groups.<name>.quiet_hours`): during them,
notifications to the group's sms, phone and slack addresses for priorities not in
`except` are held; when they end, what is still open and unacknowledged goes out as one
digest per (channel, recipient). Email and mqtt are not held.

Held alerts join the escalation engine's held-back set of that (channel, recipient),
the one a rate limit fills, due when the quiet hours end: the same digest, the same
delivery keys (sent once, kill -9 safe). The escalation itself moves on as usual: later
levels are not delayed by one recipient's night.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from zoneinfo import ZoneInfo

from homealert_mqtt.config.settings import EscalationSettings
from homealert_mqtt.escalation.plan import GROUP_ADDRESSED, Target, level_of
from homealert_mqtt.models import AlertRecord
from homealert_mqtt.noise.schedules import QuietHours

HELD_CHANNELS = frozenset({"sms", "phone", "slack"})


class QuietPlan:
    """Which alerts a target may not get now, and until when."""

    def __init__(
        self,
        escalation: EscalationSettings,
        recipients: Mapping[str, Mapping[str, Iterable[str]]],
        quiet: Mapping[str, QuietHours],
        zone: ZoneInfo,
    ) -> None:
        self.escalation = escalation
        self.recipients = recipients
        self.quiet = dict(quiet)
        self.zone = zone

    def __bool__(self) -> bool:
        return bool(self.quiet)

    def held_until(self, target: Target, alert: AlertRecord, level: int, now: int) -> int | None:
        """When `target` may get `alert` at `level`, if not now: every group of the
        level that reaches the target is in its quiet hours, and none lets the alert's
        priority through. The earliest end of those quiet hours."""
        if target.channel not in HELD_CHANNELS or target.channel in GROUP_ADDRESSED:
            return None
        step = level_of(self.escalation.policy_for(alert.priority), level)
        if target.channel not in step.channels:
            return None
        ends = []
        for group in step.groups:
            if target.recipient not in self.recipients.get(group, {}).get(target.channel, ()):
                continue
            hours = self.quiet.get(group)
            end = hours.until(now, self.zone) if hours is not None else None
            if hours is None or end is None or alert.priority in hours.except_:
                return None  # this group reaches the target now
            ends.append(end)
        return min(ends) if ends else None
