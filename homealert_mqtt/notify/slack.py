"""Slack incoming webhook: one post per delivery, to the priority's channel."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import voluptuous as vol

from homealert_mqtt.notify.base import (
    TIMEOUT,
    ChannelContext,
    DeliveryError,
    Message,
    http_url,
    log_disabled,
    mask_url,
    redact,
    retryable_http_status,
    unset_reason,
)

NAME = "slack"

_HANDLES = [vol.All(str, vol.Length(min=1, max=100))]

SCHEMA = vol.Schema(
    {
        vol.Optional("enabled", default=True): bool,
        vol.Optional("webhook_url", default="https://hooks.slack.com/services/xxx"): vol.Any(
            None, http_url
        ),
        vol.Optional("channels", default=dict): vol.Schema(
            {
                vol.Optional("critical", default="#alerts-critical"): str,
                vol.Optional("high", default="#alerts-high"): str,
                vol.Optional("default", default="#alerts"): str,
            }
        ),
        vol.Optional(
            "mention_users", default=lambda: {"p1": ["@oncall"], "p2": ["@oncall"]}
        ): vol.Schema({vol.Optional(f"p{n}"): _HANDLES for n in range(1, 6)}),
        vol.Optional("timeout", default=10.0): TIMEOUT,
    }
)

# A handle as people write it (@oncall, oncall, here) or already in Slack's own
# syntax (<@U123>, <!subteam^S1>). Anything else could smuggle markup into the post.
_HANDLE_RE = re.compile(r"^(<[@!#][A-Za-z0-9^|._-]{1,80}>|@?[A-Za-z0-9._-]{1,80})$")
_SPECIAL = frozenset({"here", "channel", "everyone"})


@dataclass(frozen=True)
class SlackConfig:
    webhook_url: str = field(repr=False)
    channel_critical: str
    channel_high: str
    channel_default: str
    mention_users: dict[str, tuple[str, ...]]
    timeout: float

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> SlackConfig:
        channels = section["channels"]
        return cls(
            webhook_url=section["webhook_url"],
            channel_critical=channels["critical"],
            channel_high=channels["high"],
            channel_default=channels["default"],
            mention_users={k.upper(): tuple(v) for k, v in section["mention_users"].items()},
            timeout=section["timeout"],
        )

    def channel_for(self, priority: str) -> str:
        if priority == "P1":
            return self.channel_critical
        if priority == "P2":
            return self.channel_high
        return self.channel_default

    def __repr__(self) -> str:
        return (
            f"SlackConfig(webhook_url={mask_url(self.webhook_url)!r}, "
            f"channels=({self.channel_critical!r}, {self.channel_high!r}, "
            f"{self.channel_default!r}), timeout={self.timeout})"
        )


def create(section: dict[str, Any], ctx: ChannelContext) -> SlackChannel | None:
    del ctx
    section = SCHEMA(section)
    if reason := why_disabled(section):
        log_disabled(NAME, reason)
        return None
    return SlackChannel(SlackConfig.from_section(section))


def why_disabled(section: dict[str, Any]) -> str | None:
    """Why a validated section cannot send, or None when it can."""
    if not section["enabled"]:
        return "enabled: false"
    return unset_reason(NAME, section, ["webhook_url"])


def mention(handle: str) -> str:
    """Slack syntax for a handle; raises DeliveryError for one that is not a handle."""
    handle = handle.strip()
    if not _HANDLE_RE.match(handle):
        raise DeliveryError(f"slack: not a Slack handle: {handle[:80]!r}", retryable=False)
    if handle.startswith("<"):
        return handle
    bare = handle.removeprefix("@")
    if bare in _SPECIAL:
        return f"<!{bare}>"
    # Webhooks turn "@name" into a mention when the post sets link_names.
    return f"@{bare}"


class SlackChannel:
    name = NAME

    def __init__(self, config: SlackConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"SlackChannel({self._config!r})"

    def payload(self, recipient: str, message: Message) -> dict[str, Any]:
        """The JSON body for one delivery (public for the engine's dry runs and tests)."""
        handles = [recipient, *self._config.mention_users.get(message.priority, ())]
        mentions = list(dict.fromkeys(mention(h) for h in handles))  # ordered, unique
        return {
            "channel": self._config.channel_for(message.priority),
            "text": f"{' '.join(mentions)} {message.slack}",
            "link_names": True,
            "unfurl_links": False,
        }

    async def send(self, recipient: str, message: Message) -> None:
        body = self.payload(recipient, message)
        if self._session is None:
            # Created here, not in __init__: a ClientSession belongs to a running loop.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._config.timeout)
            )
        try:
            async with self._session.post(
                self._config.webhook_url, json=body, allow_redirects=False
            ) as response:
                status = response.status
                answer = (await response.content.read(300)).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as err:
            text = self._redact(f"slack: {type(err).__name__}: {err}")
            raise DeliveryError(text, retryable=True) from err
        if not 200 <= status < 300:
            raise DeliveryError(
                self._redact(f"slack: HTTP {status}: {answer.strip()[:200]}"),
                retryable=retryable_http_status(status),
                status=status,
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _redact(self, text: str) -> str:
        url = self._config.webhook_url
        path = url.split("://", 1)[-1].partition("/")[2]
        # A very short path is no secret, and masking it would garble the text.
        return redact(text, [url, path if len(path) >= 8 else None])
