"""The Twilio REST client shared by the sms and phone channels.

Twilio's library has no base-URL setting, so requests go through a small subclass of
its public `AsyncTwilioHttpClient` that sends each request to `api_base_url` (the
Twilio REST path, e.g. `/2010-04-01/Accounts/<sid>/Messages.json`, is kept). That is
how a self-hosted gateway or a test server stands in for api.twilio.com.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import voluptuous as vol
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

# Twilio's Client imports its API modules on first use, so the first page after a start
# paid for the imports (a few hundred ms on a busy machine, in the middle of a storm).
# Imported with the service instead.
from twilio.rest.api.v2010.account import AccountContext  # noqa: F401
from twilio.rest.api.v2010.account.call import CallList  # noqa: F401
from twilio.rest.api.v2010.account.message import MessageList  # noqa: F401
from yarl import URL

from homealert_mqtt.notify.base import (
    TIMEOUT,
    DeliveryError,
    http_url,
    redact,
    retryable_http_status,
    unset_reason,
)

TWILIO_API = "https://api.twilio.com"

# What a delivery can meet; anything else is a bug and propagates as it is.
_FAILURES = (TwilioException, aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError)

# Keys shared by `channels.sms` and `channels.phone`, with the defaults of homealert.yaml.
SCHEMA_KEYS: dict[Any, Any] = {
    vol.Optional("enabled", default=True): bool,
    vol.Optional("provider", default="twilio"): vol.All(str, vol.Lower, vol.In(["twilio"])),
    vol.Optional("account_sid", default="your_sid"): vol.Any(None, str),
    vol.Optional("auth_token", default="your_token"): vol.Any(None, str),
    vol.Optional("from_number", default="+1234567890"): vol.Any(None, vol.Coerce(str)),
    vol.Optional("api_base_url", default=TWILIO_API): http_url,
    vol.Optional("timeout", default=10.0): TIMEOUT,
}


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str
    api_base_url: str
    timeout: float

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> TwilioConfig:
        return cls(
            account_sid=section["account_sid"],
            auth_token=section["auth_token"],
            from_number=section["from_number"],
            api_base_url=section["api_base_url"],
            timeout=section["timeout"],
        )


def missing_credentials(channel: str, section: dict[str, Any]) -> str | None:
    """Why the section cannot send, or None when it can."""
    return unset_reason(channel, section, ("account_sid", "auth_token", "from_number"))


def check_number(channel: str, recipient: str) -> str:
    """A phone number or Twilio address, stripped; a blank one is a permanent failure."""
    number = recipient.strip()
    if not number or any(c.isspace() for c in number):
        raise DeliveryError(f"{channel}: not a phone number: {recipient[:40]!r}", retryable=False)
    return number


@dataclass(frozen=True, slots=True)
class Reply:
    """One message someone sent to our number."""

    sid: str
    number: str  # who sent it
    body: str
    inbound: bool


class _RebasedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """Sends every request to `base_url`, keeping Twilio's path and query."""

    def __init__(self, base_url: str, timeout: float) -> None:
        # No retries here (max_retries=None): retrying is the engine's job.
        super().__init__(pool_connections=True, timeout=timeout)
        self._base = URL(base_url)

    def rebase(self, url: str) -> str:
        # Scheme and host are replaced whatever they are, so an edge or region taken
        # from TWILIO_* environment variables cannot send a request elsewhere.
        original = URL(url)
        prefix = self._base.path.rstrip("/")
        return str(
            self._base.with_path(prefix + original.path, encoded=True).with_query(original.query)
        )

    async def request(
        self,
        method: str,
        url: str,
        *,  # Twilio's ClientBase passes everything after the URL by keyword
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the parent's interface)
        allow_redirects: bool = False,
    ) -> Any:
        headers = dict(headers or {})
        if auth is not None:
            # The parent would build aiohttp.BasicAuth, which aiohttp 3.14 deprecates;
            # the header is the same. Twilio's request log skips Authorization headers.
            headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        # The parent ignores its own `timeout` unless one is passed per request, and
        # aiohttp reads None as "no timeout at all".
        return await super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=self.timeout if timeout is None else timeout,
            allow_redirects=allow_redirects,
        )


class TwilioClient:
    """Messages and calls for one account; created lazily inside the running loop."""

    def __init__(self, channel: str, config: TwilioConfig) -> None:
        self._channel = channel
        self._config = config
        self._http: _RebasedHttpClient | None = None
        self._client: Any = None

    def _rest(self) -> Any:
        if self._client is None:
            # The http client opens an aiohttp session, which needs the running loop.
            self._http = _RebasedHttpClient(self._config.api_base_url, self._config.timeout)
            self._client = Client(
                username=self._config.account_sid,
                password=self._config.auth_token,
                account_sid=self._config.account_sid,
                http_client=self._http,
            )
        return self._client

    async def send_sms(self, to: str, body: str) -> str:
        """Create a Message; returns its sid."""
        try:
            created = await self._rest().api.v2010.account.messages.create_async(
                to=to, from_=self._config.from_number, body=body
            )
        except _FAILURES as err:
            raise self._error(err) from err
        return str(created.sid)

    async def place_call(self, to: str, twiml: str) -> str:
        """Create a Call that speaks `twiml`; returns its sid."""
        try:
            created = await self._rest().api.v2010.account.calls.create_async(
                to=to, from_=self._config.from_number, twiml=twiml
            )
        except _FAILURES as err:
            raise self._error(err) from err
        return str(created.sid)

    async def list_replies(self, since: datetime, limit: int = 200) -> list[Reply]:
        """Messages sent to our number on or after `since`'s day (`To`, `DateSent>`)."""
        try:
            found = await self._rest().api.v2010.account.messages.list_async(
                to=self._config.from_number, date_sent_after=since, limit=limit
            )
        except _FAILURES as err:
            raise self._error(err) from err
        return [
            Reply(
                sid=str(m.sid),
                number=str(m.from_ or ""),
                body=str(m.body or ""),
                inbound=str(m.direction or "") == "inbound",
            )
            for m in found
        ]

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = None
        self._client = None

    def _error(self, err: Exception) -> DeliveryError:
        name = self._channel
        if isinstance(err, TwilioRestException | TwilioServiceException):
            # str() of these prints ANSI colours on a terminal; build our own text.
            detail = getattr(err, "msg", None) or getattr(err, "title", "")
            text = f"{name}: Twilio HTTP {err.status}: {detail}"
            status = int(err.status)
            return DeliveryError(
                self._redact(text), retryable=retryable_http_status(status), status=status
            )
        if isinstance(err, aiohttp.ClientError | TimeoutError | OSError):
            text = self._redact(f"{name}: {type(err).__name__}: {err}")
            return DeliveryError(text, retryable=True)
        # A 2xx answer Twilio's parser could not read (TwilioException, ValueError,
        # KeyError): the message may well have gone out, and a retry could page twice.
        text = self._redact(f"{name}: unreadable Twilio answer: {type(err).__name__}")
        return DeliveryError(text, retryable=False)

    def _redact(self, text: str) -> str:
        return redact(text, [self._config.auth_token])
