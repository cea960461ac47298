"""The apprise channel, delivering through Apprise's json:// to a local HTTP recorder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from homealert_mqtt.notify import apprise_channel
from homealert_mqtt.notify.apprise_channel import AppriseChannel, shown
from homealert_mqtt.notify.base import ChannelContext, DeliveryError, Message

from .conftest import HttpRecorder

SECRET_USER = "hookuser"  # noqa: S105 - test secrets to hunt for
SECRET_PASSWORD = "pa55-Apprise-S3cret"  # noqa: S105
SECRET_PATH = "hook-7f3a9c2e1b"  # noqa: S105


async def _no_publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    raise AssertionError("the apprise channel must not publish")


CTX = ChannelContext(publish=_no_publish, base_topic="homealert")


def json_url(server: HttpRecorder) -> str:
    host_port = server.url.split("://", 1)[1]
    return f"json://{SECRET_USER}:{SECRET_PASSWORD}@{host_port}/{SECRET_PATH}"


@pytest.fixture
async def channel() -> AsyncIterator[AppriseChannel]:
    made = apprise_channel.create({"enabled": True, "timeout": 5}, CTX)
    assert made is not None
    yield made
    await made.aclose()


async def test_sends_title_and_text_as_apprise_json(
    http_server: HttpRecorder, channel: AppriseChannel, message: Message
) -> None:
    await channel.send(json_url(http_server), message)

    [request] = http_server.requests
    assert request.method == "POST"
    assert request.path == f"/{SECRET_PATH}"
    assert request.json["title"] == message.subject
    assert request.json["message"] == message.text
    assert request.json["type"] in {"failure", "warning", "info"}


@pytest.mark.parametrize("status", [500, 503, 429, 404])
async def test_failed_send_is_retryable_and_never_shows_the_url(
    http_server: HttpRecorder,
    channel: AppriseChannel,
    message: Message,
    all_logs: Callable[[], str],
    status: int,
) -> None:
    http_server.answer(status, {"error": "nope"})

    with pytest.raises(DeliveryError) as caught:
        await channel.send(json_url(http_server), message)

    assert caught.value.retryable  # Apprise tells no more than "failed"
    _assert_no_secret(str(caught.value), all_logs())


async def test_a_url_apprise_cannot_use_is_permanent(
    channel: AppriseChannel, message: Message, all_logs: Callable[[], str]
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await channel.send(f"nosuchscheme://{SECRET_PASSWORD}@example/{SECRET_PATH}", message)

    assert not caught.value.retryable
    _assert_no_secret(str(caught.value), all_logs())


async def test_a_hanging_server_times_out_without_blocking_the_loop(
    http_server: HttpRecorder, message: Message
) -> None:
    http_server.delay = 10
    made = apprise_channel.create({"enabled": True, "timeout": 0.5}, CTX)
    assert made is not None
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(DeliveryError) as caught:
            await made.send(json_url(http_server), message)
    finally:
        ticker.cancel()
        http_server.release.set()
        await made.aclose()
    assert caught.value.retryable
    assert ticks >= 20  # the loop kept running while Apprise waited in its thread


def test_shown_keeps_the_scheme_only() -> None:
    url = f"ntfy://{SECRET_PASSWORD}@ntfy.example/{SECRET_PATH}"
    text = shown(url)
    assert text.startswith("ntfy://***#")
    assert SECRET_PASSWORD not in text
    assert SECRET_PATH not in text
    assert shown(url) == shown(url)
    assert shown(url) != shown(url + "x")


def test_disabled_by_default() -> None:
    assert apprise_channel.create({}, CTX) is None


def _assert_no_secret(*texts: Any) -> None:
    for text in texts:
        for secret in (SECRET_PASSWORD, SECRET_PATH):
            assert secret not in text
