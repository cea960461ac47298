"""Real local servers for the channel tests: SMTP (aiosmtpd), HTTP (aiohttp.web).

Everything listens on 127.0.0.1 only, on ports the OS hands out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homealert_mqtt.notify.base import Message

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def message() -> Message:
    return Message(
        subject="[P1] disk_space on nas",
        text="Disk almost full on nas (id nas_disk)",
        html="<p>Disk almost full on <b>nas</b></p>",
        short="[P1] disk_space on nas (nas_disk): 95% full",
        voice="Disk almost full on nas & the <backup> box",
        slack="*disk_space* on nas",
        priority="P1",
        alert_ids=("nas_disk",),
    )


# --- TLS ------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, made with `cryptography`."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "homealert test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOCALHOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsFiles(cert_path, key_path)


# --- SMTP -----------------------------------------------------------------------


@dataclass
class SmtpRecorder:
    """aiosmtpd handler and authenticator that records what arrives."""

    host: str = LOCALHOST
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    # recipient -> SMTP answer to RCPT TO, e.g. "550 5.1.1 no such user"
    refuse: dict[str, str] = field(default_factory=dict)
    accepted: str = "s3cret-pass"  # the one password the server accepts
    received_at: list[float] = field(default_factory=list)  # wall clock, one per message
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(parsed)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.received_at.append(time.time())
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult  # noqa: PLC0415

        login, password = auth_data.login.decode(), auth_data.password.decode()
        with self._lock:
            self.logins.append((login, password))
        # handled=False: let aiosmtpd answer 535 itself (True means "already answered").
        return AuthResult(success=password == self.accepted, handled=False)


SmtpFactory = Callable[..., SmtpRecorder]


@pytest.fixture
def smtp_server(tls_files: TlsFiles) -> Iterator[SmtpFactory]:
    """Starts aiosmtpd servers: plain, STARTTLS (tls=True) or implicit TLS (ssl=True)."""
    from aiosmtpd.controller import Controller  # noqa: PLC0415

    controllers: list[Any] = []

    def start(*, tls: bool = False, implicit_tls: bool = False) -> SmtpRecorder:
        recorder = SmtpRecorder(port=free_port())
        options: dict[str, Any] = {"authenticator": recorder.authenticate}
        if tls:
            options |= {"tls_context": tls_files.server_context(), "require_starttls": True}
        if implicit_tls:
            options["ssl_context"] = tls_files.server_context()
        controller = Controller(recorder, hostname=LOCALHOST, port=recorder.port, **options)
        controller.start()
        controllers.append(controller)
        return recorder

    yield start
    for controller in controllers:
        controller.stop()


# --- HTTP -----------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    json: Any


@dataclass
class HttpRecorder:
    """A recording HTTP server standing in for Slack and Twilio."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    # Answers in order, then the default; each (status, JSON body or text).
    answers: deque[tuple[int, Any]] = field(default_factory=deque)
    delay: float = 0.0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self, status: int, body: Any = None) -> None:
        self.answers.append((status, body))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form: dict[str, str] = {}
        body: Any = None
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}
        elif request.content_type == "application/json":
            body = await request.json()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.headers), form, body)
        )
        if self.delay:
            # Hold the request until the test ends (or the delay passes), no sleep loop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.delay)
        status, payload = self.answers.popleft() if self.answers else self._default(request)
        if isinstance(payload, str):
            return web.Response(status=status, text=payload)
        return web.json_response(payload, status=status)

    @staticmethod
    def _default(request: web.Request) -> tuple[int, Any]:
        if request.path.endswith("/Messages.json"):
            return 201, {"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}
        if request.path.endswith("/Calls.json"):
            return 201, {"sid": "CA0123456789abcdef0123456789abcdef", "status": "queued"}
        return 200, "ok"


@contextlib.asynccontextmanager
async def serving(recorder: HttpRecorder) -> AsyncIterator[None]:
    """`recorder` answering every path on a free loopback port (`recorder.url`)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    # No access log: it stands for Slack's servers, whose logs are not ours to check.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOCALHOST, 0, backlog=1024)
    await site.start()
    recorder.url = f"http://{LOCALHOST}:{runner.addresses[0][1]}"
    try:
        yield
    finally:
        recorder.release.set()
        await runner.cleanup()


@pytest.fixture
async def http_server() -> AsyncIterator[HttpRecorder]:
    recorder = HttpRecorder()
    async with serving(recorder):
        yield recorder


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word: for timeouts."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, LOCALHOST, 0)
    yield server.sockets[0].getsockname()[1]
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
def refused_port() -> int:
    """A local port with no listener: connecting is refused."""
    return free_port()


@pytest.fixture
def our_warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The warnings homealert_mqtt logged so far in this test."""

    def collect() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelname == "WARNING" and r.name.startswith("homealert_mqtt")
        ]

    return collect


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """Every record logged by anyone at DEBUG and up, with tracebacks: to hunt secrets."""
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        return caplog.text

    return text
