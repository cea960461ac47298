"""Pure decisions: who gets a batch at a level, and when an alert's next step is due."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from homealert_mqtt.config.settings import EscalationSettings, Level, Policy
from homealert_mqtt.models import AlertRecord, Priority
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


@dataclass(frozen=True, slots=True)
class Start:
    """How a new alert of one priority starts: `quiet` when its level 0 reaches nobody
    (no enabled channel, no address), so ingest can make it active at once instead of
    leaving that to an escalation pass; `next_delay_ms` is then when level 1 is due."""

    quiet: bool
    next_delay_ms: int | None


def start_plan(
    escalation: EscalationSettings,
    recipients: Mapping[str, Mapping[str, Iterable[str]]],
    enabled: Collection[str],
) -> dict[Priority, Start]:
    plan = {}
    for priority in Priority:
        policy = escalation.policy_for(priority)
        first = policy.levels[0]
        reaches = any(
            channel in enabled
            and (channel in GROUP_ADDRESSED or any(recipients.get(group, {}).get(channel, ())))
            for channel in first.channels
            for group in first.groups
        )
        following = policy.levels[1].delay * 1000 if len(policy.levels) > 1 else None
        plan[priority] = Start(quiet=not reaches, next_delay_ms=following)
    return plan
