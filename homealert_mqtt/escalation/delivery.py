"""One message to one recipient on one channel: idempotent, rate-limited, retried.

The only place that retries a send. A channel says "retryable or permanent"; here a send
gets a timeout, retryable failures are tried again with exponential backoff and jitter
within a deadline shorter than the delivery key's lease, and the outcome of every
attempt is recorded on each alert it was about.

Redis calls around the send are retried in place until they go through (a Redis restart
is not a failed page), and both ends are safe to repeat: the reservation holds this
delivery's token, so asking again after a lost reply finds it ours; the settle records
an outcome once per key. A message the provider accepted is therefore recorded as sent
even when Redis was away at that moment, and never sent again; the one window left is
the process dying between the provider's answer and the settle.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from homealert_mqtt.clock import Clock
from homealert_mqtt.config.settings import RateLimit
from homealert_mqtt.models import iso
from homealert_mqtt.notify.base import Channel, DeliveryError, Message
from homealert_mqtt.store.escalation_store import EscalationStore
from homealert_mqtt.transient import Outage, retry_transient

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_LEASE_S = 90  # alerts.escalation.lease


@dataclass(frozen=True, slots=True)
class Leases:
    """How long claimed work stays with the replica that took it (`alerts.escalation.lease`).

    A claimed batch, resolved notice or held-back digest whose replica dies comes back
    after `claim_ms`. A delivery key stays `pending` for two thirds of that, so it has
    expired when the batch comes back (a key still pending would make the batch skip the
    send, and the level would be lost); one delivery's retries stop at half of it, so a
    live sender never outlives its key.
    """

    claim_ms: int = DEFAULT_LEASE_S * 1000

    @classmethod
    def from_seconds(cls, seconds: float) -> Leases:
        return cls(int(seconds * 1000))

    @property
    def key_ms(self) -> int:
        return self.claim_ms * 2 // 3

    @property
    def retry_deadline(self) -> float:
        return self.claim_ms / 2000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    initial: float = 0.5
    cap: float = 8.0
    attempt_timeout: float = 15.0
    deadline: float = 45.0  # and at most Leases.retry_deadline: never outlives the key

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.initial * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # sent | failed | deferred | skipped | no_channel
    error: str | None = None
    attempts: int = 0


@dataclass
class Delivery:
    store: EscalationStore
    channels: dict[str, Channel]
    rate_limits: dict[str, RateLimit]
    clock: Clock
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    leases: Leases = field(default_factory=Leases)
    concurrency: int = 32  # deliveries in flight at once (alerts.escalation.concurrency)
    # This run of the replica: a prefix of every reservation token, so that the run
    # after a crash can tell this one's reservations dead (store/lua/bury.lua).
    incarnation: str = field(default_factory=lambda: f"run:{secrets.token_hex(4)}")
    outage: Outage = field(default_factory=lambda: Outage("Redis"))
    on_sent: list[Callable[[str], None]] = field(default_factory=list)
    on_failed: list[Callable[[str], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)

    def shown(self, channel_name: str, recipient: str) -> str:
        """A recipient as logs and the delivery log show it: a channel whose addresses
        hold secrets (apprise URLs) masks them with its `display`."""
        display = getattr(self.channels.get(channel_name), "display", None)
        return str(display(recipient)) if display is not None else recipient

    async def deliver(  # noqa: PLR0917 - one delivery's facts, all required
        self,
        channel_name: str,
        recipient: str,
        keys: Sequence[str],
        alert_ids: Sequence[str],
        render: Callable[[Sequence[str]], Message],
        level: int,
        *,
        defer: Callable[[Sequence[str]], Awaitable[None]] | None = None,
    ) -> tuple[Outcome, list[str]]:
        """Send what `render(ids)` makes for the alerts whose key this caller reserves.

        Over the rate limit, and given `defer`, the alerts are handed to `defer` (held
        back for one digest when the window reopens) instead of being sent. Returns the
        outcome and the alert ids it concerned (those not already handled).
        """
        channel = self.channels.get(channel_name)
        if channel is None:
            return Outcome("no_channel"), []
        async with self._slots:
            return await self._deliver(
                channel_name, channel, recipient, keys, alert_ids, render, level, defer=defer
            )

    async def _deliver(  # noqa: PLR0917 - as deliver()
        self,
        name: str,
        channel: Channel,
        recipient: str,
        keys: Sequence[str],
        alert_ids: Sequence[str],
        render: Callable[[Sequence[str]], Message],
        level: int,
        *,
        defer: Callable[[Sequence[str]], Awaitable[None]] | None,
    ) -> tuple[Outcome, list[str]]:
        token = self.token()
        owned = await self._redis(lambda: self.store.reserve(keys, token, self.leases.key_ms))
        mine_keys = [k for k, ok in zip(keys, owned, strict=True) if ok]
        mine = [a for a, ok in zip(alert_ids, owned, strict=True) if ok]
        if not mine:
            return Outcome("skipped"), []
        limit = self.rate_limits.get(name)
        if (
            limit is not None
            and defer is not None
            and not await self._redis(
                lambda: self.store.take_token(name, recipient, limit.count, limit.period)
            )
        ):
            await defer(mine)
            outcome = Outcome("deferred")
            await self._settle(mine_keys, token, mine, name, recipient, level, outcome)
            return outcome, mine
        outcome = await self._send(channel, recipient, render(mine))
        await self._settle(mine_keys, token, mine, name, recipient, level, outcome)
        for observe in self.on_sent if outcome.status == "sent" else self.on_failed:
            observe(name)
        return outcome, mine

    def token(self) -> str:
        """A new reservation token of this run: "<incarnation>.<random>"."""
        return f"{self.incarnation}.{secrets.token_hex(6)}"

    async def _settle(  # noqa: PLR0917 - one delivery's facts, all required
        self,
        keys: Sequence[str],
        token: str,
        alert_ids: Sequence[str],
        channel: str,
        recipient: str,
        level: int,
        outcome: Outcome,
    ) -> None:
        attempt = {
            "at": iso(self.clock()),
            "channel": channel,
            "recipient": self.shown(channel, recipient),
            "level": level,
            "outcome": outcome.status,
            "attempts": outcome.attempts,
            "error": outcome.error,
        }
        paged = (channel, recipient) if outcome.status == "sent" else None
        await self._redis(
            lambda: self.store.settle(keys, token, alert_ids, attempt, paged=paged), "settle"
        )

    async def _redis(self, call: Callable[[], Awaitable[T]], where: str = "delivery") -> T:
        return await retry_transient(call, self.outage, where=where)

    async def _send(self, channel: Channel, recipient: str, message: Message) -> Outcome:
        error = "no attempt"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.retry.deadline, self.leases.retry_deadline)
        for attempt in range(self.retry.attempts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(min(self.retry.attempt_timeout, remaining)):
                    await channel.send(recipient, message)
                return Outcome("sent", attempts=attempt + 1)
            except DeliveryError as err:
                error = str(err)
                if not err.retryable:
                    return Outcome("failed", error=error, attempts=attempt + 1)
            except TimeoutError:
                error = "timed out"
            except Exception as err:  # a channel bug must not stop the pager
                _LOGGER.exception("channel %s raised unexpectedly", channel.name)
                error = f"unexpected {type(err).__name__}"
            if attempt + 1 < self.retry.attempts:
                await asyncio.sleep(min(self.retry.delay(attempt), max(0, deadline - loop.time())))
        return Outcome("failed", error=error, attempts=self.retry.attempts)
