"""Transient failures of Redis and the broker: what counts as one, how the task that hit
one retries it in place, and how an outage reads in the log.

A Redis restart or a broker restart is an ordinary night for a house. Every part of the
service rides it out where it stands (the engine's batch, the summary, the pipeline),
retrying with a short, capped backoff, and the log tells the story once: one warning when
a dependency goes away, a reminder with a count while it stays away, one line when it is
back. No traceback for an outage that was expected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from homealert_mqtt.mqtt.backoff import Backoff
from homealert_mqtt.store.scripts import TRANSIENT_CODES

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

REMIND_SECONDS = 60.0  # while a dependency stays away, one reminder per this
RETRY_INITIAL = 0.05  # first retry of an operation a blip broke: milliseconds, not a lease
RETRY_CAP = 1.0  # and never longer than this between two tries


def is_transient(err: BaseException) -> bool:
    """Would the same call succeed later, with nothing changed on our side?

    Lost or refused connections, timeouts, an exhausted pool (redis-py's
    MaxConnectionsError is a ConnectionError), Redis loading its data after a restart,
    or Redis refusing writes for now (OOM, READONLY, ...). A script's own Lua error is
    not: it would fail the same way every time.
    """
    if isinstance(err, BaseExceptionGroup):
        return all(is_transient(e) for e in err.exceptions)
    if isinstance(err, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError):
        return True
    if isinstance(err, ResponseError):
        text = str(err)
        return any(text.startswith(f"{code} ") or f"-{code} " in text for code in TRANSIENT_CODES)
    return False


def describe(err: BaseException) -> str:
    """One line for the log: the first leaf of a group, its type when it says nothing."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


@dataclass
class Outage:
    """How one dependency's availability reads in the log.

    `failed` from any task that hit a transient error, `ok` from any task whose call
    went through: the first failure logs one warning, further ones are counted and
    summed up at most every `remind` seconds, and the first success after them logs one
    line saying how long it lasted.
    """

    name: str
    remind: float = REMIND_SECONDS
    clock: Callable[[], float] = time.monotonic
    logger: logging.Logger = _LOGGER
    down_since: float | None = field(default=None, init=False)
    failures: int = field(default=0, init=False)
    _reminded: float = field(default=0.0, init=False)
    _listeners: list[Callable[[bool], None]] = field(default_factory=list, init=False)

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """`listener(up)` when the dependency goes away (False) or comes back (True)."""
        self._listeners.append(listener)

    def failed(self, err: BaseException, where: str = "") -> None:
        now = self.clock()
        self.failures += 1
        if self.down_since is None:
            self.down_since = self._reminded = now
            place = f" ({where})" if where else ""
            self.logger.warning(
                "%s unavailable%s: %s; retrying until it is back", self.name, place, describe(err)
            )
            for listener in self._listeners:
                listener(False)
        elif now - self._reminded >= self.remind:
            self._reminded = now
            self.logger.warning(
                "%s still unavailable after %.0f s (%d failed calls): %s",
                self.name,
                now - self.down_since,
                self.failures,
                describe(err),
            )

    def ok(self) -> None:
        if self.down_since is None:
            return
        lasted = self.clock() - self.down_since
        self.logger.info(
            "%s is back after %.1f s (%d failed calls)", self.name, lasted, self.failures
        )
        self.down_since = None
        self.failures = 0
        for listener in self._listeners:
            listener(True)


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    outage: Outage,
    *,
    where: str = "",
    cap: float = RETRY_CAP,
) -> T:
    """`await call()` until it goes through, retrying transient errors in place.

    Anything else is raised at once. `call` must be safe to repeat: a call whose reply
    was lost may have taken effect (the store's scripts are written for that).
    """
    backoff = Backoff(initial=RETRY_INITIAL, cap=cap)
    while True:
        try:
            result = await call()
        except (RedisError, OSError, TimeoutError, BaseExceptionGroup) as err:
            if not is_transient(err):
                raise
            outage.failed(err, where)
            await asyncio.sleep(backoff.next_delay())
            continue
        outage.ok()
        return result
