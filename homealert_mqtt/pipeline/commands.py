"""Acknowledge and resolve: per alert, per group, or every open alert.

Each change is one command.lua call (atomic). The same ack twice is one ack; a command
for an unknown or already-resolved alert is answered on `<base>/error` and changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from homealert_mqtt.pipeline.publish import StatePublisher
from homealert_mqtt.store.alert_store import AlertStore, CommandResult
from homealert_mqtt.topics import ID_PATTERN, Command, CommandKind

_LOGGER = logging.getLogger(__name__)

MAX_BY_CHARS = 128
MAX_NOTE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class CommandPayload:
    by: str | None
    note: str | None


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
        by, note = data.get("by"), data.get("note")
        for name, value in (("by", by), ("note", note)):
            if value is not None and not isinstance(value, str):
                raise BadCommand(f"{name} must be a string")
        return CommandPayload(_bounded(by, MAX_BY_CHARS), _bounded(note, MAX_NOTE_CHARS))
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
        if command.kind is CommandKind.ACK_ALL:
            await self._ack_many(await self.store.open_ids(), args)
        elif command.kind is CommandKind.GROUP_ACK:
            group = await self._group(command.target or "", topic, payload)
            if group is not None:
                await self._ack_many(list(group), args)
        else:
            target = command.target or ""
            if not ID_PATTERN.match(target):
                await self.publisher.error(f"no alert {target[:100]!r}", topic, payload)
                return
            action = "ack" if command.kind is CommandKind.ACK else "resolve"
            result = await self.store.command(action, target, args.by, args.note)
            await self._report(result, action, target, topic, payload)

    async def _group(self, group_id: str, topic: str, payload: bytes) -> tuple[str, ...] | None:
        group = await self.store.get_group(group_id) if ID_PATTERN.match(group_id) else None
        if group is None:
            await self.publisher.error(f"no group {group_id[:100]!r}", topic, payload)
            return None
        return group.alert_ids

    async def _ack_many(self, alert_ids: list[str], args: CommandPayload) -> None:
        for alert_id in alert_ids:
            result = await self.store.command("ack", alert_id, args.by, args.note)
            # Resolved members of a group and earlier acks are left as they are.
            if result.outcome == "acknowledged":
                await self._publish(result)

    async def _report(
        self, result: CommandResult, action: str, target: str, topic: str, payload: bytes
    ) -> None:
        if result.outcome == "unknown":
            await self.publisher.error(f"no alert {target!r}", topic, payload)
        elif result.outcome == "final":
            state = result.alert.state.value if result.alert else "final"
            await self.publisher.error(
                f"alert {target!r} is already {state}; {action} changes nothing", topic, payload
            )
        elif result.outcome != "unchanged":
            await self._publish(result)

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
