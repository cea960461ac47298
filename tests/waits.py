"""Waiting for conditions without fixed sleeps, and reading what the service left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt

from homealert_mqtt.clock import wall_ms
from homealert_mqtt.config import Settings
from homealert_mqtt.models import AlertRecord
from homealert_mqtt.redis_client import make_redis
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.store.keys import Keys

ROOT = Path(__file__).resolve().parent.parent


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10,
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll `check` until it is true (for state that no message announces, e.g. Redis)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def store_for(settings: Settings) -> Any:
    """An AlertStore on the service's Redis and key prefix, to check what it stored."""
    store = AlertStore(
        make_redis(settings.redis),
        Keys.for_prefix(settings.redis.key_prefix),
        settings.alerts,
        wall_ms,
    )
    try:
        yield store
    finally:
        await store.redis.aclose()


async def stored_alerts(store: AlertStore) -> list[AlertRecord]:
    return await store.get_alerts(await store.stored_ids())


async def retained(
    settings: Settings, topic_filter: str, expect: int, timeout: float = 15, **client: Any
) -> dict[str, bytes]:
    """The retained messages under `topic_filter` (a fresh subscription), once `expect`
    topics have arrived. `client` adds aiomqtt.Client options (TLS, credentials)."""
    found: dict[str, bytes] = {}
    async with aiomqtt.Client(
        "127.0.0.1",
        settings.mqtt.port,
        identifier=f"retained-{uuid.uuid4().hex[:8]}",
        **client,
    ) as mqtt:
        await mqtt.subscribe(topic_filter, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for message in mqtt.messages:
                    if not message.retain:
                        continue
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    found[str(message.topic)] = payload
                    if len(found) >= expect:
                        break
    assert len(found) >= expect, f"{len(found)} retained topics under {topic_filter}, not {expect}"
    return found


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI or service subprocess: no HOMEALERT_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEALERT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class ServiceProcess:
    """`python -m homealert_mqtt run ...` as a child process, logging to a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log
        self.env = env or subprocess_env()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "homealert_mqtt", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=ROOT,
        )
        log.close()
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextlib.contextmanager
def service_process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(args, log, env).start()
    try:
        yield proc
    finally:
        proc.stop()
