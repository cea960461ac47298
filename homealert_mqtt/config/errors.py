"""The one exception configuration problems are reported with."""

from __future__ import annotations


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one `dotted.path: reason` per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
