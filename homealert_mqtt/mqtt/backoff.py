"""Reconnect delays: exponential with full jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.5
    cap: float = 30.0
    _attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * (2**self._attempt))
        self._attempt += 1
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def reset(self) -> None:
        self._attempt = 0
