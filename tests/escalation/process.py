"""The service as a child process (`python -m homealert_mqtt run`), to kill -9 and restart,
and a recording Twilio/Slack server that notes when each request arrived."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.notify.conftest import HttpRecorder, serving
from tests.probe import Probe

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """One service process at a time, restartable with the same config (and client id)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        # HOMEALERT_* from the caller's environment would override the config file.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEALERT_")}
        self.env |= {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "homealert_mqtt", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
            )

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no `offline` of its own (the broker sends the will)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def service_process(config: Path, log: Path) -> Iterator[ServiceProcess]:
    service = ServiceProcess(config, log)
    service.start()
    try:
        yield service
    finally:
        service.kill()


async def wait_online(probe: Probe, after: int, service: ServiceProcess) -> float:
    """Wall time (s) at which the service said `online` (after probe index `after`)."""
    try:
        await probe.wait_for(
            f"{probe.base}/status", lambda s: s.payload == b"online", timeout=20, after=after
        )
    except AssertionError as err:
        raise AssertionError(f"service not online; its log:\n{service.log()[-3000:]}") from err
    return time.time()


@dataclass(frozen=True)
class Arrival:
    at: float  # wall clock, seconds
    path: str
    to: str  # Twilio's To, Slack's channel
    body: str  # SMS Body, a call's Twiml, Slack's text


@dataclass
class TimedRecorder(HttpRecorder):
    """HttpRecorder that also notes each request's arrival time (before any hold)."""

    arrivals: list[Arrival] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        at = time.time()
        to = body = ""
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}  # cached for super
            to, body = form.get("To", ""), form.get("Body", form.get("Twiml", ""))
        elif request.content_type == "application/json":
            data = await request.json()  # the body is cached for super
            to, body = str(data.get("channel", "")), str(data.get("text", ""))
        self.arrivals.append(Arrival(at, request.path, to, body))
        return await super().handle(request)

    def sms(self, to: str | None = None) -> list[Arrival]:
        return [
            a
            for a in self.arrivals
            if a.path.endswith("/Messages.json") and (to is None or a.to == to)
        ]


@pytest.fixture
async def http_server() -> AsyncIterator[TimedRecorder]:
    """Overrides the notify tests' `http_server` where imported: same server, timed."""
    recorder = TimedRecorder()
    async with serving(recorder):
        yield recorder
