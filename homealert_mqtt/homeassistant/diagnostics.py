"""`<base>/diagnostics` (retained): what Home Assistant's diagnostic entities show.

`{"version", "redis": "connected"|"disconnected", "last_error": {"error", "kind", "at"} |
null}`: the last input rejected (`kind: rejected`, the reason on `<base>/error`) or
notification that failed (`kind: notify_failed`, "<channel>: <error>", as in
the `notify_failed` event).
The broker connection needs no field here: it is `<base>/status` (last will `offline`).

Published when it changes and after each reconnect (the broker may have lost it).
Redis's state is the service's own view (`Service.redis_ok`, kept by its heartbeat and
by every task that meets a Redis error), looked at every `POLL` seconds: a flag read,
no Redis round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from homealert_mqtt.models import iso
from homealert_mqtt.pipeline.publish import StateListener

# publish(topic, payload, qos, retain)
Publish = Callable[[str, bytes, int, bool], Awaitable[None]]

POLL: Final = 1.0
ERROR_CHARS: Final = 1000  # a reason is short; bound it anyway (retained, shown in HA)


class DiagnosticsPublisher(StateListener):
    def __init__(
        self,
        publish: Publish,
        topic: str,
        *,
        version: str,
        redis_ok: Callable[[], bool],
        clock: Callable[[], int],
        poll: float = POLL,
    ) -> None:
        self._publish = publish
        self.topic = topic
        self._version = version
        self._redis_ok = redis_ok
        self._clock = clock
        self._poll = poll
        self._last_error: dict[str, Any] | None = None
        self._sent: bytes | None = None
        self._due = asyncio.Event()

    def payload(self) -> bytes:
        body = {
            "version": self._version,
            "redis": "connected" if self._redis_ok() else "disconnected",
            "last_error": self._last_error,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    # -- StateListener
    async def rejected(self, reason: str) -> None:
        self._error("rejected", reason)

    async def notify_failed(self, channel: str, error: str) -> None:
        self._error("notify_failed", f"{channel}: {error}")

    def _error(self, kind: str, text: str) -> None:
        self._last_error = {"error": text[:ERROR_CHARS], "kind": kind, "at": iso(self._clock())}
        self._due.set()

    async def resynced(self, alert_ids: Sequence[str]) -> None:
        self._sent = None  # a reconnect: send it again
        self._due.set()

    async def run(self) -> None:
        while True:
            payload = self.payload()
            if payload != self._sent:
                await self._publish(self.topic, payload, 1, True)
                self._sent = payload
            self._due.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._due.wait()
