"""Email channel against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import voluptuous as vol

from homealert_mqtt.notify import email as email_channel
from homealert_mqtt.notify.base import ChannelContext, DeliveryError, Message

from .conftest import LOCALHOST, SmtpFactory, TlsFiles


async def _no_publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    raise AssertionError("email must not publish")


CTX = ChannelContext(publish=_no_publish, base_topic="homealert")


def _channel(**overrides: Any) -> email_channel.EmailChannel:
    section: dict[str, Any] = {
        "smtp_server": LOCALHOST,
        "security": "none",
        "username": None,
        "password": None,
        "from_address": "homealert@home.test",
        "timeout": 5,
    } | overrides
    channel = email_channel.create(section, CTX)
    assert channel is not None
    return channel


async def test_text_html_and_subject_arrive_without_login(
    smtp_server: SmtpFactory, message: Message
) -> None:
    server = smtp_server()
    channel = _channel(smtp_port=server.port)

    await channel.send("me@home.test", message)

    assert server.logins == []
    assert server.envelopes == [("homealert@home.test", ["me@home.test"])]
    [received] = server.messages
    assert received["Subject"] == message.subject
    assert received["From"] == "homealert@home.test"
    assert received["To"] == "me@home.test"
    assert received["X-Homealert-Priority"] == "P1"
    plain = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().strip() == message.text
    assert html.get_content().strip() == message.html


async def test_starttls_with_login(
    smtp_server: SmtpFactory, tls_files: TlsFiles, message: Message
) -> None:
    server = smtp_server(tls=True)
    channel = _channel(
        smtp_port=server.port,
        security="starttls",
        username="homealert",
        password=server.accepted,
        ca_certs=str(tls_files.cert),
    )

    await channel.send("me@home.test", message)

    assert server.logins == [("homealert", server.accepted)]
    assert len(server.messages) == 1


async def test_starttls_without_username_never_logs_in(
    smtp_server: SmtpFactory, tls_files: TlsFiles, message: Message
) -> None:
    server = smtp_server(tls=True)
    channel = _channel(smtp_port=server.port, security="STARTTLS", ca_certs=str(tls_files.cert))

    await channel.send("me@home.test", message)

    assert server.logins == []
    assert len(server.messages) == 1


async def test_implicit_tls(
    smtp_server: SmtpFactory, tls_files: TlsFiles, message: Message
) -> None:
    server = smtp_server(implicit_tls=True)
    channel = _channel(smtp_port=server.port, security="ssl", ca_certs=str(tls_files.cert))

    await channel.send("me@home.test", message)

    assert len(server.messages) == 1


async def test_untrusted_certificate_is_permanent(
    smtp_server: SmtpFactory, message: Message
) -> None:
    server = smtp_server(tls=True)
    channel = _channel(smtp_port=server.port, security="starttls")

    with pytest.raises(DeliveryError) as caught:
        await channel.send("me@home.test", message)

    assert not caught.value.retryable
    assert server.messages == []


async def test_starttls_required_but_not_offered_is_permanent(
    smtp_server: SmtpFactory, message: Message
) -> None:
    server = smtp_server()  # plain server: no STARTTLS in its EHLO answer
    channel = _channel(smtp_port=server.port, security="starttls")

    with pytest.raises(DeliveryError) as caught:
        await channel.send("me@home.test", message)

    assert not caught.value.retryable
    assert server.messages == []


async def test_wrong_password_is_permanent_and_never_shown(
    smtp_server: SmtpFactory,
    tls_files: TlsFiles,
    message: Message,
    all_logs: Callable[[], str],
) -> None:
    server = smtp_server(tls=True)
    wrong = "wrong-but-secret-42"
    channel = _channel(
        smtp_port=server.port,
        security="starttls",
        username="homealert",
        password=wrong,
        ca_certs=str(tls_files.cert),
    )

    with pytest.raises(DeliveryError) as caught:
        await channel.send("me@home.test", message)

    assert not caught.value.retryable
    assert wrong not in str(caught.value)
    assert wrong not in repr(channel)
    assert wrong not in all_logs()


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [("550 5.1.1 No such user", False), ("451 4.3.0 Try again later", True)],
)
async def test_refused_recipient(
    smtp_server: SmtpFactory, message: Message, answer: str, retryable: bool
) -> None:
    server = smtp_server()
    server.refuse["nobody@home.test"] = answer
    channel = _channel(smtp_port=server.port)

    with pytest.raises(DeliveryError) as caught:
        await channel.send("nobody@home.test", message)

    assert caught.value.retryable is retryable


async def test_connection_refused_is_retryable(refused_port: int, message: Message) -> None:
    channel = _channel(smtp_port=refused_port)

    with pytest.raises(DeliveryError) as caught:
        await channel.send("me@home.test", message)

    assert caught.value.retryable


async def test_silent_server_times_out_retryable(silent_server: int, message: Message) -> None:
    channel = _channel(smtp_port=silent_server, timeout=0.3)

    with pytest.raises(DeliveryError) as caught:
        await channel.send("me@home.test", message)

    assert caught.value.retryable


async def test_header_injection_is_refused(smtp_server: SmtpFactory, message: Message) -> None:
    server = smtp_server()
    channel = _channel(smtp_port=server.port)

    with pytest.raises(DeliveryError) as caught:
        await channel.send("me@home.test\r\nBcc: other@home.test", message)

    assert not caught.value.retryable
    assert server.messages == []


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ({"enabled": False}, "enabled: false"),
        # the shipped defaults hold only placeholders
        ({}, "channels.email.password is still the example value 'your_password'"),
        ({"password": "your_smtp_password"}, "password is still the example value"),
        ({"smtp_server": None}, "no smtp_server"),
    ],
)
def test_disabled_or_without_credentials(
    section: dict[str, Any], reason: str, our_warnings: Callable[[], list[str]]
) -> None:
    assert email_channel.create(section, CTX) is None
    [warning] = our_warnings()
    assert "email" in warning
    assert reason in warning


def test_schema_rejects_unknown_keys_and_bad_security() -> None:
    with pytest.raises(vol.Invalid):
        email_channel.SCHEMA({"smtp_host": "x"})
    with pytest.raises(vol.Invalid):
        email_channel.SCHEMA({"security": "tls13"})
    assert email_channel.SCHEMA({})["security"] == "starttls"
