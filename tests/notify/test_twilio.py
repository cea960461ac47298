"""SMS and phone channels (the twilio library) against a local Twilio stand-in."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import voluptuous as vol

from homealert_mqtt.notify import phone, sms
from homealert_mqtt.notify.base import Channel, ChannelContext, DeliveryError, Message

from .conftest import LOCALHOST, HttpRecorder

SID = "AC0123456789abcdef0123456789abcdef"
AUTH = "tok-very-secret-0123456789"
FROM = "+15005550006"
TO = "+15005550001"


async def _no_publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    raise AssertionError("twilio channels must not publish")


CTX = ChannelContext(publish=_no_publish, base_topic="homealert")


def _section(base_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "account_sid": SID,
        "auth_token": AUTH,
        "from_number": FROM,
        "api_base_url": base_url,
        "timeout": 5,
    } | overrides


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Channel]]:
    made: list[Channel] = []

    def build(kind: str, base_url: str, **overrides: Any) -> Channel:
        module = sms if kind == "sms" else phone
        channel = module.create(_section(base_url, **overrides), CTX)
        assert channel is not None
        made.append(channel)
        return channel

    yield build
    for channel in made:
        await channel.aclose()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_sms_from_to_body_on_the_messages_path(
    http_server: HttpRecorder, make: Callable[..., Channel], message: Message
) -> None:
    channel = make("sms", http_server.url)

    await channel.send(TO, message)

    [request] = http_server.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.form == {"To": TO, "From": FROM, "Body": message.short}
    assert request.headers["Authorization"] == _basic(SID, AUTH)


async def test_api_base_url_with_a_path_prefix(
    http_server: HttpRecorder, make: Callable[..., Channel], message: Message
) -> None:
    channel = make("sms", http_server.url + "/twilio/")

    await channel.send(TO, message)

    [request] = http_server.requests
    assert request.path == f"/twilio/2010-04-01/Accounts/{SID}/Messages.json"


async def test_call_says_the_voice_text_in_the_language(
    http_server: HttpRecorder, make: Callable[..., Channel], message: Message
) -> None:
    channel = make("phone", http_server.url, voice_language="de-DE")

    await channel.send(TO, message)

    [request] = http_server.requests
    assert request.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert request.form["To"] == TO
    assert request.form["From"] == FROM
    assert request.form["Twiml"].endswith(
        '<Response><Say language="de-DE">'
        "Disk almost full on nas &amp; the &lt;backup&gt; box"
        "</Say></Response>"
    )


@pytest.mark.parametrize("kind", ["sms", "phone"])
@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (401, False)]
)
async def test_twilio_errors(
    *,
    http_server: HttpRecorder,
    make: Callable[..., Channel],
    message: Message,
    all_logs: Callable[[], str],
    kind: str,
    status: int,
    retryable: bool,
) -> None:
    http_server.answer(
        status, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": status}
    )
    channel = make(kind, http_server.url)

    with pytest.raises(DeliveryError) as caught:
        await channel.send(TO, message)

    assert caught.value.retryable is retryable
    assert caught.value.status == status
    assert AUTH not in str(caught.value)
    assert AUTH not in all_logs()


async def test_unreadable_success_is_permanent(
    http_server: HttpRecorder, make: Callable[..., Channel], message: Message
) -> None:
    # The SMS may have gone out: retrying could page the person twice.
    http_server.answer(201, "<html>not json</html>")
    channel = make("sms", http_server.url)

    with pytest.raises(DeliveryError) as caught:
        await channel.send(TO, message)

    assert not caught.value.retryable


@pytest.mark.parametrize("kind", ["sms", "phone"])
async def test_connection_refused_is_retryable(
    refused_port: int, make: Callable[..., Channel], message: Message, kind: str
) -> None:
    channel = make(kind, f"http://{LOCALHOST}:{refused_port}")

    with pytest.raises(DeliveryError) as caught:
        await channel.send(TO, message)

    assert caught.value.retryable


async def test_timeout_is_retryable(
    http_server: HttpRecorder, make: Callable[..., Channel], message: Message
) -> None:
    http_server.delay = 10
    channel = make("sms", http_server.url, timeout=0.3)

    with pytest.raises(DeliveryError) as caught:
        await channel.send(TO, message)

    assert caught.value.retryable


async def test_blank_number_is_permanent(
    http_server: HttpRecorder, make: Callable[..., Channel], message: Message
) -> None:
    channel = make("sms", http_server.url)

    with pytest.raises(DeliveryError) as caught:
        await channel.send("  ", dataclasses.replace(message, short="x"))

    assert not caught.value.retryable
    assert http_server.requests == []


def test_token_masked_in_repr() -> None:
    for module in (sms, phone):
        channel = module.create(_section("http://127.0.0.1:9"), CTX)
        assert channel is not None
        assert AUTH not in repr(channel)
        assert SID in repr(channel)


@pytest.mark.parametrize("module", [sms, phone])
@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ({"enabled": False}, "enabled: false"),
        # the shipped placeholders
        ({}, "account_sid is still the example value 'your_sid'; channels."),
        ({"account_sid": SID, "auth_token": AUTH, "from_number": None}, "no from_number"),
    ],
)
def test_disabled_or_without_credentials(
    module: Any,
    section: dict[str, Any],
    reason: str,
    our_warnings: Callable[[], list[str]],
    all_logs: Callable[[], str],
) -> None:
    assert module.create(section, CTX) is None
    [warning] = our_warnings()
    assert module.NAME in warning
    assert reason in warning
    assert AUTH not in all_logs()


def test_schema() -> None:
    assert phone.SCHEMA({})["voice_language"] == "en-US"
    assert sms.SCHEMA({})["api_base_url"] == "https://api.twilio.com"
    with pytest.raises(vol.Invalid):
        sms.SCHEMA({"voice_language": "en-US"})  # a phone key
    with pytest.raises(vol.Invalid):
        sms.SCHEMA({"provider": "nexmo"})
    with pytest.raises(vol.Invalid):
        phone.SCHEMA({"voice_language": "en US; drop"})
