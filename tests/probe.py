"""A test's eyes and hands on the broker: publish, and wait for what the service publishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Probe:
    """Subscribes to `<base>/#` and keeps everything; `wait_for` polls what arrived."""

    def __init__(
        self,
        port: int,
        base: str,
        protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V5,
        **client: Any,
    ) -> None:
        self.port = port
        self.base = base
        self.protocol = protocol
        self.client_options = client  # more aiomqtt.Client options (TLS, credentials)
        self.seen: list[Seen] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> Probe:
        self._client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=f"probe-{uuid.uuid4().hex[:8]}",
            protocol=self.protocol,
            max_inflight_messages=1000,
            **self.client_options,
        )
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.base}/#", qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(self._client.__aexit__(None, None, None), 5)

    async def _read(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.seen.append(Seen(str(message.topic), payload, bool(message.retain)))
            self._arrived.set()

    async def publish(
        self, topic: str, payload: Any, *, qos: int = 1, retain: bool = False
    ) -> None:
        assert self._client is not None
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
        await self._client.publish(topic, payload, qos=qos, retain=retain)

    async def alert(self, **fields: Any) -> None:
        await self.publish(f"{self.base}/in", fields)

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[Seen], bool] = lambda _s: True,
        timeout: float = 10,
        after: int = 0,
    ) -> Seen:
        """The first message on `topic` (from index `after`) that satisfies `predicate`."""
        deadline = asyncio.get_running_loop().time() + timeout
        index = after
        while True:
            while index < len(self.seen):
                seen = self.seen[index]
                index += 1
                if seen.topic == topic and predicate(seen):
                    return seen
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                topics = sorted({s.topic for s in self.seen})
                raise AssertionError(f"nothing matching on {topic} within {timeout}s; saw {topics}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))

    async def state(
        self,
        alert_id: str,
        predicate: Callable[[Any], bool],
        timeout: float = 10,
        after: int = 0,
    ) -> Any:
        seen = await self.wait_for(
            f"{self.base}/alert/{alert_id}",
            lambda s: bool(s.payload) and predicate(s.json()),
            timeout,
            after,
        )
        return seen.json()

    def last(self, topic: str) -> Seen | None:
        for seen in reversed(self.seen):
            if seen.topic == topic:
                return seen
        return None

    def on(self, topic: str) -> list[Seen]:
        return [s for s in self.seen if s.topic == topic]

    def events(self, name: str | None = None) -> list[Any]:
        out = [s.json() for s in self.on(f"{self.base}/event")]
        return [e for e in out if name is None or e["event"] == name]

    async def wait_events(self, name: str, count: int, timeout: float = 10) -> list[Any]:
        """At least `count` events called `name`, waiting for them to arrive."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found := self.events(name)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(found)} {name} events, wanted {count}")
            await asyncio.sleep(0.02)
        return found

    def errors(self) -> list[Any]:
        return [s.json() for s in self.on(f"{self.base}/error")]
