"""Pure decisions: who gets a batch at a level, and when an alert's next step is due."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from homealert_mqtt.config.settings import EscalationSettings, Level, Policy
from homealert_mqtt.models import AlertRecord
from homealert_mqtt.store.escalation_store import NextStep, TimerMember

# The mqtt channel addresses a recipient group by its name (<base>/notify/<group>).
GROUP_ADDRESSED = frozenset({"mqtt"})


@dataclass(frozen=True, slots=True, order=True)
class Target:
    channel: str
    recipient: str


def level_of(policy: Policy, level: int) -> Level:
    """The policy's level, or its last when the config shrank since the timer was set."""
    return policy.levels[min(level, len(policy.levels) - 1)]


def targets(
    escalation: EscalationSettings,
    recipients: Mapping[str, Mapping[str, Iterable[str]]],
    alerts: Iterable[AlertRecord],
    level: int,
) -> list[Target]:
    """Everyone the batch goes to: the union over each alert's own policy at `level`."""
    found: set[Target] = set()
    for alert in alerts:
        step = level_of(escalation.policy_for(alert.priority), level)
        for channel in step.channels:
            for group in step.groups:
                if channel in GROUP_ADDRESSED:
                    found.add(Target(channel, group))
                    continue
                for address in recipients.get(group, {}).get(channel, ()):
                    found.add(Target(channel, address))
    return sorted(found)


def next_step(
    escalation: EscalationSettings, alert: AlertRecord, member: TimerMember, now: int
) -> NextStep | None:
    """After `member` was notified: the next level (due `delay` after the alert was
    opened, or at once if that is past), else a `repeat` of the last, else nothing."""
    policy = escalation.policy_for(alert.priority)
    following = member.level + 1
    if following < len(policy.levels):
        opened = alert.opened_at if alert.opened_at is not None else alert.first_seen
        due = opened + policy.levels[following].delay * 1000
        return NextStep(following, 0, max(due, now))
    if policy.repeat:
        return NextStep(member.level, member.round + 1, now + policy.repeat * 1000)
    return None
