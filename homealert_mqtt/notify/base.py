"""The contract between the escalation engine and every notification channel.

A channel turns one rendered `Message` into one delivery for one recipient. It never
retries: it raises `DeliveryError` and says whether a retry could help, and the engine
(the one place that retries) decides what to do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import voluptuous as vol

if TYPE_CHECKING:
    from homealert_mqtt.store.reply_codes import ReplyCodes

_LOGGER = logging.getLogger(__name__)

PRIORITIES = ("P1", "P2", "P3", "P4", "P5")

# The seed config ships these as "fill me in" values. Sending with them can only fail
# (or worse, reach a stranger's webhook), so a channel treats them as missing.
PLACEHOLDERS = frozenset(
    {
        "your_password",
        "your_sid",
        "your_token",
        "https://hooks.slack.com/services/xxx",
    }
)

# Other "fill me in" shapes people copy from examples: your_api_key, xxx, changeme,
# <token>, and a URL whose last path segment is one of them.
_PLACEHOLDER_SHAPE = re.compile(r"^(your[_-][a-z_]+|x{3,}|change[_-]?me|<[^>]*>)$", re.IGNORECASE)

# Seconds for one delivery; bounded so a typo cannot park a delivery for hours.
TIMEOUT = vol.All(vol.Coerce(float), vol.Range(min=0.01, max=600))

MASK = "***"


class DeliveryError(Exception):
    """One delivery failed; `retryable` tells the engine whether to try again.

    Retryable: timeouts, refused or dropped connections, HTTP 429 and 5xx, SMTP 4xx.
    Permanent: authentication, a bad recipient, other 4xx, SMTP 5xx.
    The text never carries a secret (passwords, tokens, webhook paths).
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status

    def __repr__(self) -> str:
        return f"DeliveryError({str(self)!r}, retryable={self.retryable}, status={self.status})"


@dataclass(frozen=True)
class Message:
    """What one recipient receives on one channel, already rendered and bounded."""

    subject: str
    text: str
    html: str | None
    short: str  # SMS: at most 160 characters
    voice: str  # spoken by a phone call (TwiML <Say>)
    slack: str  # Slack mrkdwn
    priority: str  # "P1".."P5"
    alert_ids: tuple[str, ...]


class Channel(Protocol):
    """A configured, ready channel. One instance serves every recipient."""

    name: str

    async def send(self, recipient: str, message: Message) -> None:
        """Deliver once, or raise `DeliveryError`."""

    async def aclose(self) -> None:
        """Release sessions and connections; the channel is not used afterwards."""


Publish = Callable[[str, bytes, int, bool], Awaitable[None]]


@dataclass(frozen=True)
class ChannelContext:
    """What channels need from the running service."""

    publish: Publish  # (topic, payload, qos, retain)
    base_topic: str
    reply_codes: ReplyCodes | None = None  # SMS reply codes (channels.sms.reply_ack)


class ChannelModule(Protocol):
    """A channel module: its config schema and a factory (see registry.py)."""

    SCHEMA: vol.Schema

    def create(self, section: dict[str, Any], ctx: ChannelContext) -> Channel | None: ...

    def why_disabled(self, section: dict[str, Any]) -> str | None: ...


def is_blank(value: object) -> bool:
    return value is None or not str(value).strip()


def is_placeholder(value: object) -> bool:
    """True for an example value ("your_password", ".../services/xxx"), never a real one."""
    text = str(value).strip()
    last = text.rstrip("/").rsplit("/", 1)[-1]
    return (
        text in PLACEHOLDERS
        or bool(_PLACEHOLDER_SHAPE.match(text or "-"))
        or ("://" in text and bool(_PLACEHOLDER_SHAPE.match(last or "-")))
    )


def unset_reason(channel: str, section: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    """Why `keys` of `channels.<channel>` keep it from sending, in plain words; None when
    each is set. Only example values are quoted: a real secret is never in the text."""
    missing = [k for k in keys if is_blank(section[k])]
    examples = [k for k in keys if not is_blank(section[k]) and is_placeholder(section[k])]
    parts = []
    if missing:
        parts.append(f"no {', '.join(missing)} set (channels.{channel}.{missing[0]})")
    for key in examples:
        parts.append(f"channels.{channel}.{key} is still the example value {section[key]!r}")
    if not parts:
        return None
    return "; ".join(parts) + f" (set real ones, or channels.{channel}.enabled: false)"


def log_disabled(name: str, reason: str) -> None:
    """The single warning a channel logs when it is not created."""
    _LOGGER.warning("notification channel %s is disabled: %s", name, reason)


def mask_url(url: str) -> str:
    """Scheme and host only: webhook URLs carry their secret in the path."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return MASK
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/{MASK}"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every non-empty secret in `text` (library messages may echo inputs)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def http_url(value: Any) -> str:
    """Voluptuous validator: an http(s) URL with a host."""
    if not isinstance(value, str):
        raise vol.Invalid("expected a URL string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Never echo the value: a webhook URL is a secret.
        raise vol.Invalid("expected an http:// or https:// URL with a host")
    return value


def retryable_http_status(status: int) -> bool:
    """Throttling and server faults may pass; other client errors will not."""
    return status == 429 or status >= 500
