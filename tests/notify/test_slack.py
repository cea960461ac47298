"""Slack channel against a local recording HTTP server."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import voluptuous as vol

from homealert_mqtt.notify import slack
from homealert_mqtt.notify.base import ChannelContext, DeliveryError, Message

from .conftest import LOCALHOST, HttpRecorder

HOOK_PATH = "/services/T000/B000/very-secret-token"


async def _no_publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    raise AssertionError("slack must not publish")


CTX = ChannelContext(publish=_no_publish, base_topic="homealert")


@pytest.fixture
async def make_channel() -> AsyncIterator[Callable[..., slack.SlackChannel]]:
    channels: list[slack.SlackChannel] = []

    def make(url: str, **overrides: Any) -> slack.SlackChannel:
        section = {
            "webhook_url": url + HOOK_PATH,
            "mention_users": {"p1": ["@oncall", "@boss"], "p2": ["@oncall"]},
            "timeout": 5,
        } | overrides
        channel = slack.create(section, CTX)
        assert channel is not None
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        await channel.aclose()


@pytest.mark.parametrize(
    ("priority", "channel_name", "mentions"),
    [
        ("P1", "#alerts-critical", ["@oncall", "@boss"]),
        ("P2", "#alerts-high", ["@oncall"]),
        ("P3", "#alerts", ["@oncall"]),
        ("P5", "#alerts", ["@oncall"]),
    ],
)
async def test_posts_to_the_priority_channel_with_mentions(
    *,
    http_server: HttpRecorder,
    make_channel: Callable[..., slack.SlackChannel],
    message: Message,
    priority: str,
    channel_name: str,
    mentions: list[str],
) -> None:
    channel = make_channel(http_server.url)

    await channel.send("@oncall", dataclasses.replace(message, priority=priority))

    [request] = http_server.requests
    assert (request.method, request.path) == ("POST", HOOK_PATH)
    assert request.json["channel"] == channel_name
    text = request.json["text"]
    assert text.startswith(" ".join(mentions) + " ")  # each handle once, recipient first
    assert text.endswith(message.slack)
    assert request.json["link_names"] is True


async def test_recipient_handle_is_mentioned(
    http_server: HttpRecorder, make_channel: Callable[..., slack.SlackChannel], message: Message
) -> None:
    channel = make_channel(http_server.url, channels={"default": "#home"})

    await channel.send("manager", dataclasses.replace(message, priority="P4"))
    await channel.send("<@U024BE7LH>", dataclasses.replace(message, priority="P4"))
    await channel.send("@here", dataclasses.replace(message, priority="P4"))

    texts = [r.json["text"] for r in http_server.requests]
    assert texts[0].startswith("@manager ")
    assert texts[1].startswith("<@U024BE7LH> ")
    assert texts[2].startswith("<!here> ")
    assert {r.json["channel"] for r in http_server.requests} == {"#home"}


async def test_markup_in_a_handle_is_refused(
    http_server: HttpRecorder, make_channel: Callable[..., slack.SlackChannel], message: Message
) -> None:
    channel = make_channel(http_server.url)

    with pytest.raises(DeliveryError) as caught:
        await channel.send("@x <!channel>", message)

    assert not caught.value.retryable
    assert http_server.requests == []


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (400, False), (403, False), (404, False)],
)
async def test_http_errors(
    *,
    http_server: HttpRecorder,
    make_channel: Callable[..., slack.SlackChannel],
    message: Message,
    all_logs: Callable[[], str],
    status: int,
    retryable: bool,
) -> None:
    http_server.answer(status, "invalid_payload")
    channel = make_channel(http_server.url)

    with pytest.raises(DeliveryError) as caught:
        await channel.send("@oncall", message)

    assert caught.value.retryable is retryable
    assert caught.value.status == status
    assert "very-secret-token" not in str(caught.value)
    assert "very-secret-token" not in all_logs()


async def test_connection_refused_is_retryable(
    refused_port: int,
    make_channel: Callable[..., slack.SlackChannel],
    message: Message,
    all_logs: Callable[[], str],
) -> None:
    channel = make_channel(f"http://{LOCALHOST}:{refused_port}")

    with pytest.raises(DeliveryError) as caught:
        await channel.send("@oncall", message)

    assert caught.value.retryable
    assert "very-secret-token" not in str(caught.value)
    assert "very-secret-token" not in all_logs()


async def test_timeout_is_retryable(
    http_server: HttpRecorder, make_channel: Callable[..., slack.SlackChannel], message: Message
) -> None:
    http_server.delay = 10
    channel = make_channel(http_server.url, timeout=0.3)

    with pytest.raises(DeliveryError) as caught:
        await channel.send("@oncall", message)

    assert caught.value.retryable


def test_secret_masked_in_repr() -> None:
    channel = slack.create({"webhook_url": "https://hooks.slack.test" + HOOK_PATH}, CTX)
    assert channel is not None
    assert "very-secret-token" not in repr(channel)
    assert "hooks.slack.test" in repr(channel)


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ({"enabled": False}, "enabled: false"),
        ({}, "webhook_url is still the example value"),  # the shipped .../services/xxx
        ({"webhook_url": "https://hooks.slack.com/services/XXX/YYY/xxxx"}, "example value"),
        ({"webhook_url": None}, "no webhook_url"),
    ],
)
def test_disabled_or_without_webhook(
    section: dict[str, Any], reason: str, our_warnings: Callable[[], list[str]]
) -> None:
    assert slack.create(section, CTX) is None
    [warning] = our_warnings()
    assert "slack" in warning
    assert reason in warning


def test_schema() -> None:
    with pytest.raises(vol.Invalid) as caught:
        slack.SCHEMA({"webhook_url": "ftp://x" + HOOK_PATH})
    assert "very-secret-token" not in str(caught.value)
    with pytest.raises(vol.Invalid):
        slack.SCHEMA({"mention_users": {"p9": ["@x"]}})
    with pytest.raises(vol.Invalid):
        slack.SCHEMA({"channel": "#x"})
    defaults = slack.SCHEMA({})
    assert defaults["channels"] == {
        "critical": "#alerts-critical",
        "high": "#alerts-high",
        "default": "#alerts",
    }
    assert defaults["mention_users"] == {"p1": ["@oncall"], "p2": ["@oncall"]}
