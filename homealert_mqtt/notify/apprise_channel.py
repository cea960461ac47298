"""Apprise: any URL Apprise knows (ntfy, Pushover, Telegram, Signal, Gotify, Discord,
Matrix, Home Assistant notify, json:// ...) as one channel, `apprise` in policies.

Recipients are the URLs in `recipients.groups.<name>.apprise`. They hold secrets (tokens,
passwords, webhook paths, ntfy topics): they are shown as `<scheme>://***#<hash>` in our
logs and delivery log, and Apprise's (and urllib3's) log records pass through a filter that masks
every part of the URLs sent to. Apprise sends block: each runs in a small thread pool,
bounded by `timeout` (a thread that hangs past it keeps its slot until Apprise's own
connect and read timeouts end it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import voluptuous as vol

from homealert_mqtt.notify.base import (
    MASK,
    TIMEOUT,
    ChannelContext,
    DeliveryError,
    Message,
)

NAME = "apprise"
WORKERS = 4
# Apprise's logger, and urllib3's (under Apprise's requests), whose debug lines name paths.
LOGGERS = ("apprise", "urllib3.connectionpool")

SCHEMA = vol.Schema(
    {
        vol.Optional("enabled", default=False): bool,
        vol.Optional("timeout", default=15.0): TIMEOUT,
    }
)

# Parts of a URL long enough to be a secret; hosts (with dots) and ports stay readable.
_PARTS = re.compile(r"[^/:@?&=#+,\s]{6,}")


def create(section: dict[str, Any], ctx: ChannelContext) -> AppriseChannel | None:
    del ctx
    section = SCHEMA(section)
    if why_disabled(section):
        return None  # opt-in (registry.OPT_IN): off is the normal case, not worth a warning
    return AppriseChannel(section["timeout"])


def why_disabled(section: dict[str, Any]) -> str | None:
    """Why a validated section cannot send (it needs no credentials: its URLs are the
    recipients'), or None."""
    return None if section["enabled"] else "enabled: false"


def shown(url: str) -> str:
    """How a URL appears in logs and the delivery log: its scheme and a short hash."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    tag = hashlib.sha256(url.encode()).hexdigest()[:8]
    safe_scheme = scheme if scheme.isalnum() and len(scheme) <= 16 else ""
    return f"{safe_scheme}://{MASK}#{tag}"


def secret_parts(url: str) -> set[str]:
    """The URL and each of its parts that could be a secret."""
    parts = {url, *(p for p in _PARTS.findall(url.split("://", 1)[-1]) if not _is_host(p))}
    return {p for p in parts if p}


def _is_host(part: str) -> bool:
    return "." in part and all(label.isalnum() or "-" in label for label in part.split("."))


class _Redactor(logging.Filter):
    """Masks the secrets of every URL this channel sent to, in Apprise's log records."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in sorted(self.secrets, key=len, reverse=True):
                text = text.replace(secret, MASK)
            record.msg, record.args = text, None
        return True


class AppriseChannel:
    name = NAME

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="apprise")
        self._redactor = _Redactor()
        for name in LOGGERS:
            logging.getLogger(name).addFilter(self._redactor)

    def display(self, recipient: str) -> str:
        return shown(recipient.strip())

    def watch(self, urls: Iterable[str]) -> None:
        """Mask these URLs in Apprise's logs from now on."""
        for url in urls:
            self._redactor.secrets |= secret_parts(url.strip())

    async def send(self, recipient: str, message: Message) -> None:
        url = recipient.strip()
        self.watch([url])
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                sent = await loop.run_in_executor(self._executor, _notify, url, message)
        except TimeoutError as err:
            raise DeliveryError(f"apprise: {shown(url)} timed out", retryable=True) from err
        except _Unusable as err:
            raise DeliveryError(
                f"apprise: {shown(url)} is not a URL Apprise can use", retryable=False
            ) from err
        except Exception as err:  # Apprise's plugins may raise anything; never echo it
            raise DeliveryError(
                f"apprise: {shown(url)} failed: {type(err).__name__}", retryable=True
            ) from err
        if not sent:
            # Apprise says only "failed" (its log has the reason): it may pass next time.
            raise DeliveryError(f"apprise: {shown(url)} refused or failed", retryable=True)

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for name in LOGGERS:
            logging.getLogger(name).removeFilter(self._redactor)


class _Unusable(Exception):
    pass


def _priority_type(priority: str) -> str:
    import apprise  # noqa: PLC0415 - ~0.3 s of plugin loading, only when the channel sends

    if priority in ("P1", "P2"):
        return apprise.NotifyType.FAILURE.value
    if priority == "P3":
        return apprise.NotifyType.WARNING.value
    return apprise.NotifyType.INFO.value


def _notify(url: str, message: Message) -> bool:
    """In a worker thread: one URL, one notification."""
    import apprise  # noqa: PLC0415 - see _priority_type

    sender = apprise.Apprise()
    if not sender.add(url):
        raise _Unusable
    return bool(
        sender.notify(
            body=message.text,
            title=message.subject,
            notify_type=_priority_type(message.priority),
            body_format=apprise.NotifyFormat.TEXT,
        )
    )
