"""`homealert-mqtt test-alert`: what the service would do with an alert, paging nobody.

The same steps as the pipeline (validate, fingerprint, prioritise, group) and the
escalation plan, with what would hold the alert back: silences and open sources of
inhibition (read from Redis when it answers), maintenance windows and hold-down (from
the config). Every channel's text is rendered with the real templates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homealert_mqtt.config.settings import Settings
from homealert_mqtt.escalation.plan import targets
from homealert_mqtt.models import AlertRecord, IncomingAlert, Priority, State, iso
from homealert_mqtt.noise.inhibit import Inhibitions, RuleIndex
from homealert_mqtt.noise.matchers import alert_fields
from homealert_mqtt.noise.quiet_hours import QuietPlan
from homealert_mqtt.noise.schedules import zone
from homealert_mqtt.noise.silences import Silence, SilenceIndex
from homealert_mqtt.noise.types import behaviour_of
from homealert_mqtt.notify.base import Message
from homealert_mqtt.notify.templates import NotificationKind, TemplateRenderer
from homealert_mqtt.pipeline.fingerprint import Identity, group_identity, identify
from homealert_mqtt.pipeline.prioritise import prioritise
from homealert_mqtt.pipeline.validate import Limits, parse


@dataclass(frozen=True, slots=True)
class World:
    """What Redis says (or nothing, when it did not answer)."""

    reachable: bool
    silences: Sequence[Silence] = ()
    open_alerts: Sequence[AlertRecord] = ()
    note: str = ""


def check(
    settings: Settings, payload: bytes, at: int, world: World, renderer: TemplateRenderer
) -> dict[str, Any]:
    """The routing of one alert as a JSON-able report. Raises Rejected for bad input."""
    alerts = settings.alerts
    incoming = parse(payload, None, Limits(settings.mqtt.max_payload_bytes)).alert
    identity = identify(incoming, alerts.dedup.attributes)
    group = (
        group_identity(incoming, alerts.grouping.attributes) if alerts.grouping.enabled else None
    )
    priority = prioritise(incoming, alerts.priorities, alerts.default_priority)
    record = _record(incoming, identity, priority, at, group.base_group_id if group else None)
    behaviour = behaviour_of(alerts.types, incoming.type)
    held = _held_back(settings, record, at, world, behaviour.hold_down)
    return {
        "id": record.id,
        "fingerprint": identity.fingerprint,
        "priority": priority.value,
        "group_key": group.key_text if group else None,
        "group_id": record.group_id,
        "status": incoming.status,
        "redis": "read" if world.reachable else f"not reachable ({world.note})",
        "held_back": held,
        "levels": _levels(settings, record, at, behaviour.hold_down, renderer),
    }


def _record(
    incoming: IncomingAlert, identity: Identity, priority: Priority, at: int, group_id: str | None
) -> AlertRecord:
    return AlertRecord(
        id=identity.base_id,
        state=State.NEW,
        priority=priority,
        severity=incoming.severity,
        source=incoming.source,
        type=incoming.type,
        message=incoming.message,
        attributes=incoming.attributes,
        count=1,
        first_seen=at,
        last_seen=at,
        group_id=group_id,
        escalation_level=0,
        next_escalation_at=None,
        acknowledged_by=None,
        acknowledged_at=None,
        ack_note=None,
        resolved_at=None,
        resolved_by=None,
        fingerprint=identity.fingerprint,
        epoch=1,
        updated_at=at,
        opened_at=at,
    )


def _held_back(
    settings: Settings, record: AlertRecord, at: int, world: World, hold_down: int
) -> list[dict[str, Any]]:
    alerts = settings.alerts
    fields = alert_fields(record)
    found: list[dict[str, Any]] = []
    # A window that is on is a silence in Redis too: named once, as the window.
    windows = {}
    tz = zone(alerts.timezone)
    for schedule in alerts.schedules:
        window = schedule.window_at(at, tz)
        if window and schedule.matcher.matches(fields):
            windows[schedule.silence_id] = window[1]
    for silence_id in SilenceIndex(world.silences).matching(fields, at):
        if silence_id not in windows:
            found.append({"by": "silence", "id": silence_id})
    found += [{"by": "schedule", "id": i, "until": iso(end)} for i, end in windows.items()]
    inhibitions = Inhibitions(RuleIndex(alerts.inhibit_rules))
    inhibitions.sources = {a.id: alert_fields(a) for a in world.open_alerts}
    for source in inhibitions.inhibitors(record.id, fields):
        found.append({"by": "inhibition", "id": source})
    if hold_down:
        found.append({"by": "hold_down", "seconds": hold_down, "until": iso(at + hold_down * 1000)})
    return found


def _levels(
    settings: Settings, record: AlertRecord, at: int, hold_down: int, renderer: TemplateRenderer
) -> list[dict[str, Any]]:
    escalation = settings.alerts.escalation
    policy = escalation.policy_for(record.priority)
    enabled = {name for name, cfg in settings.channels.items() if cfg.get("enabled", True)}
    quiet = QuietPlan(
        escalation, settings.recipients, settings.quiet_hours, zone(settings.alerts.timezone)
    )
    out = []
    for index, level in enumerate(policy.levels):
        due = at + max(level.delay, hold_down if index == 0 else 0) * 1000
        message = renderer.render(NotificationKind.ALERT, [record.to_public()], level=index)
        sends = [
            {
                "channel": t.channel,
                "recipient": t.recipient,
                "enabled": t.channel in enabled,
                "quiet_hours_until": iso(quiet.held_until(t, record, index, due)),
                "text": _text(message, t.channel),
            }
            for t in targets(escalation, settings.recipients, [record], index)
        ]
        out.append({"level": index, "due": iso(due), "delay": level.delay, "sends": sends})
    return out


def _text(message: Message, channel: str) -> str:
    """What the channel sends of the message (as the channel modules pick it)."""
    if channel == "sms":
        return message.short
    if channel == "phone":
        return message.voice
    if channel == "slack":
        return message.slack
    if channel == "email":
        return f"Subject: {message.subject}\n\n{message.text}"
    return message.text


def describe(report: Mapping[str, Any]) -> str:
    """The report for people."""
    lines = [
        f"alert {report['id']} (fingerprint {report['fingerprint']}), {report['priority']}, "
        f"{report['status']}",
        f"group: {report['group_id'] or 'none'}"
        + (f" (key {report['group_key']})" if report["group_key"] else ""),
        f"Redis: {report['redis']}",
    ]
    if report["status"] == "resolved":
        lines.append("a resolve pages nobody: it resolves the open alert of this fingerprint")
    held = report["held_back"]
    if held:
        lines.append("held back by:")
        lines += [f"  {_held_text(h)}" for h in held]
    else:
        lines.append("held back by: nothing")
    for level in report["levels"]:
        lines.append(f"level {level['level']} at {level['due']} (delay {level['delay']} s):")
        if not level["sends"]:
            lines.append("  nobody (no channel of this level reaches an address)")
        for send in level["sends"]:
            off = "" if send["enabled"] else " [channel disabled: skipped]"
            if send["quiet_hours_until"]:
                off += f" [quiet hours: held for a digest at {send['quiet_hours_until']}]"
            lines.append(f"  {send['channel']} -> {send['recipient']}{off}")
            lines += [f"    | {line}" for line in send["text"].splitlines()[:12]]
    return "\n".join(lines)


def _held_text(item: Mapping[str, Any]) -> str:
    by = item["by"]
    if by == "hold_down":
        return f"hold-down: nobody is paged before {item['until']} ({item['seconds']} s)"
    if by == "schedule":
        return f"maintenance window {item['id']} until {item['until']}"
    return f"{by} {item['id']}"
