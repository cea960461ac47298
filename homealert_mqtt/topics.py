"""Every MQTT topic the service uses, built and parsed in this one place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,95}$")
SOURCE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class CommandKind(StrEnum):
    ACK = "ack"
    RESOLVE = "resolve"
    GROUP_ACK = "group_ack"
    ACK_ALL = "ack_all"


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    target: str | None  # alert or group id; None for ack_all


@dataclass(frozen=True, slots=True)
class Topics:
    base: str

    # -- in
    @property
    def alerts_in(self) -> str:
        return f"{self.base}/in"

    @property
    def alerts_in_wildcard(self) -> str:
        return f"{self.base}/in/#"

    def command_filters(self) -> list[str]:
        return [
            f"{self.base}/alert/+/ack",
            f"{self.base}/alert/+/resolve",
            f"{self.base}/group/+/ack",
            f"{self.base}/ack_all",
        ]

    def input_filters(self) -> list[str]:
        # `<base>/in/#` also matches `<base>/in` itself; subscribing to both would make
        # the broker deliver every alert twice.
        return [self.alerts_in_wildcard, *self.command_filters()]

    # -- out
    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def summary(self) -> str:
        return f"{self.base}/summary"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def error(self) -> str:
        return f"{self.base}/error"

    def alert(self, alert_id: str) -> str:
        return f"{self.base}/alert/{alert_id}"

    def group(self, group_id: str) -> str:
        return f"{self.base}/group/{group_id}"

    def alert_command(self, alert_id: str, kind: CommandKind) -> str:
        return f"{self.base}/alert/{alert_id}/{kind.value}"

    def response(self, request_id: str) -> str:
        return f"{self.base}/response/{request_id}"

    def notify(self, recipient: str) -> str:
        return f"{self.base}/notify/{recipient}"

    # -- noise control (noise/)
    def silence(self, silence_id: str) -> str:
        return f"{self.base}/silence/{silence_id}"

    def silence_filters(self) -> dict[str, str]:
        """The noise-control command filters, by what they do."""
        return {
            "set": f"{self.base}/silence/+/set",
            "expire": f"{self.base}/silence/+/expire",
            "snooze": f"{self.base}/alert/+/snooze",
        }

    def middle_level(self, topic: str) -> str:
        """`<base>/<scope>/<target>/<verb>` -> target (the `+` of silence_filters)."""
        return topic[len(self.base) + 1 :].split("/")[1]

    # -- parsing
    def source_from_input(self, topic: str) -> str | None:
        """`<base>/in/<source>` -> source; `<base>/in` -> None. Raises ValueError otherwise."""
        if topic == self.alerts_in:
            return None
        prefix = self.alerts_in + "/"
        if topic.startswith(prefix):
            source = topic[len(prefix) :]
            if not SOURCE_PATTERN.match(source):
                raise ValueError(f"topic source {source[:80]!r} is not 1-64 of [A-Za-z0-9_.-]")
            return source
        raise ValueError("not an input topic")

    def is_input(self, topic: str) -> bool:
        return topic == self.alerts_in or topic.startswith(self.alerts_in + "/")

    def parse_command(self, topic: str) -> Command | None:
        """The command a topic carries, or None when it is not a command topic."""
        if topic == f"{self.base}/ack_all":
            return Command(CommandKind.ACK_ALL, None)
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 3:
            return None
        scope, target, verb = parts
        if scope == "alert" and verb in ("ack", "resolve"):
            return Command(CommandKind(verb), target)
        if scope == "group" and verb == "ack":
            return Command(CommandKind.GROUP_ACK, target)
        return None
