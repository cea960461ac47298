"""Acknowledge and resolve: per alert, per group, or every open alert.

Each change is one command.lua call (atomic). The same ack twice is one ack; a command
for an unknown or already-resolved alert is answered on `<base>/error` and changes nothing.
A command that carries a `request_id` is also answered on `<base>/response/<request_id>`
with its outcome (the CLI waits for it; docs/mqtt-api.md, "Answers to commands").
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.store.alert_store import AlertStore, CommandResult
from homealert_mqtt.topics import ID_PATTERN, Command, CommandKind

_LOGGER = logging.getLogger(__name__)

MAX_BY_CHARS = 128
MAX_NOTE_CHARS = 1024
# One topic level: the answer goes to `<base>/response/<request_id>`.
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class CommandPayload:
    by: str | None
    note: str | None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a command did: `outcome` (acknowledged, resolved, unchanged) when it was
    carried out, `error` when it was refused; `alert_ids` are the alerts it changed."""

    outcome: str | None = None
    error: str | None = None
    state: str | None = None
    alert_ids: list[str] = field(default_factory=list)

    def to_json(self, command: Command, request_id: str) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "command": command.kind.value,
            "target": command.target,
            "ok": self.error is None,
            "outcome": self.outcome,
            "state": self.state,
            "alert_ids": self.alert_ids,
            "error": self.error,
        }


class BadCommand(ValueError):
    pass


def parse_command_payload(payload: bytes) -> CommandPayload:
    """Empty, plain text (who), or `{"by": "...", "note": "..."}`."""
    if len(payload) > 4096:
        raise BadCommand("command payload over 4096 bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise BadCommand("command payload is not valid UTF-8") from err
    if not text:
        return CommandPayload(None, None)
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as err:
            raise BadCommand(f"command payload is not JSON: {err}") from err
        if not isinstance(data, dict):
            raise BadCommand("command payload must be an object")
        by, note, request_id = data.get("by"), data.get("note"), data.get("request_id")
        for name, value in (("by", by), ("note", note), ("request_id", request_id)):
            if value is not None and not isinstance(value, str):
                raise BadCommand(f"{name} must be a string")
        if request_id is not None and not REQUEST_ID.match(request_id):
            raise BadCommand("request_id must be 1-64 of [A-Za-z0-9_.-]")
        return CommandPayload(
            _bounded(by, MAX_BY_CHARS), _bounded(note, MAX_NOTE_CHARS), request_id
        )
    return CommandPayload(_bounded(text, MAX_BY_CHARS), None)


def _bounded(value: str | None, limit: int) -> str | None:
    if value is None or value == "":
        return None
    return value[:limit]


class CommandHandler:
    def __init__(self, store: AlertStore, publisher: StatePublisher) -> None:
        self.store = store
        self.publisher = publisher

    async def handle(self, command: Command, topic: str, payload: bytes) -> None:
        try:
            args = parse_command_payload(payload)
        except BadCommand as err:
            await self.publisher.error(str(err), topic, payload)
            return
        answer = await self._carry_out(command, args)
        if answer.error is not None:
            await self.publisher.error(answer.error, topic, payload)
        if args.request_id is not None:
            await self.publisher.response(args.request_id, answer.to_json(command, args.request_id))

    async def _carry_out(self, command: Command, args: CommandPayload) -> Answer:
        if command.kind is CommandKind.ACK_ALL:
            return await self._ack_many(await self.store.open_ids(), args)
        target = command.target or ""
        if command.kind is CommandKind.GROUP_ACK:
            group = await self.store.get_group(target) if ID_PATTERN.match(target) else None
            if group is None:
                return Answer(error=f"no group {target[:100]!r}")
            return await self._ack_many(list(group.alert_ids), args)
        if not ID_PATTERN.match(target):
            return Answer(error=f"no alert {target[:100]!r}")
        action = "ack" if command.kind is CommandKind.ACK else "resolve"
        result = await self.store.command(action, target, args.by, args.note)
        return await self._report(result, action, target)

    async def acknowledge(self, alert_id: str, by: str, note: str | None) -> CommandResult:
        """Acknowledge one alert for someone outside MQTT (an SMS reply); the change is
        published like any ack. Unknown, final or already acknowledged: nothing changes."""
        result = await self.store.command("ack", alert_id, by[:MAX_BY_CHARS], note)
        if result.outcome == "acknowledged":
            await self._publish(result)
        return result

    async def _ack_many(self, alert_ids: list[str], args: CommandPayload) -> Answer:
        changed = []
        for alert_id in alert_ids:
            result = await self.store.command("ack", alert_id, args.by, args.note)
            # Resolved members of a group and earlier acks are left as they are.
            if result.outcome == "acknowledged":
                await self._publish(result)
                changed.append(alert_id)
        return Answer(outcome="acknowledged" if changed else "unchanged", alert_ids=changed)

    async def _report(self, result: CommandResult, action: str, target: str) -> Answer:
        state = result.alert.state.value if result.alert else None
        if result.outcome == "unknown":
            return Answer(error=f"no alert {target!r}")
        if result.outcome == "final":
            return Answer(
                error=f"alert {target!r} is already {state or 'final'}; {action} changes nothing",
                state=state,
            )
        if result.outcome != "unchanged":
            await self._publish(result)
        changed = [target] if result.outcome != "unchanged" else []
        return Answer(outcome=result.outcome, state=state, alert_ids=changed)

    async def _publish(self, result: CommandResult) -> None:
        if result.alert is None:
            return
        acked = result.outcome == "acknowledged"
        who = result.alert.acknowledged_by if acked else result.alert.resolved_by
        _LOGGER.info(
            "alert %s %s by %s (rule %s)",
            result.alert.id,
            result.outcome,
            who or "nobody named",
            "T3" if acked else "T4",
        )
        await self.publisher.alert(result.alert, (result.outcome,))
        if result.group is not None:
            await self.publisher.group(result.group)
