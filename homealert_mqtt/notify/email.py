"""Email over SMTP (aiosmtplib): one connection per delivery, text + HTML."""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from enum import StrEnum
from typing import Any

import aiosmtplib
import voluptuous as vol

from homealert_mqtt.notify.base import (
    TIMEOUT,
    ChannelContext,
    DeliveryError,
    Message,
    log_disabled,
    redact,
    unset_reason,
)

NAME = "email"


class Security(StrEnum):
    STARTTLS = "starttls"
    SSL = "ssl"
    NONE = "none"


SCHEMA = vol.Schema(
    {
        vol.Optional("enabled", default=True): bool,
        vol.Optional("smtp_server", default="smtp.gmail.com"): vol.Any(None, str),
        vol.Optional("smtp_port", default=587): vol.All(int, vol.Range(min=1, max=65535)),
        vol.Optional("security", default="starttls"): vol.All(
            str, vol.Lower, vol.In([s.value for s in Security])
        ),
        vol.Optional("username", default="alerts@example.com"): vol.Any(None, str),
        vol.Optional("password", default="your_password"): vol.Any(None, str),
        vol.Optional("from_address", default="alerts@example.com"): str,
        # Kept so a seed config validates; rendering uses `templates.*` for every channel.
        vol.Optional("template_dir", default="/opt/templates/email"): vol.Any(None, str),
        vol.Optional("timeout", default=10.0): TIMEOUT,
        # CA bundle (PEM) to trust instead of the system store, e.g. a home CA.
        vol.Optional("ca_certs", default=None): vol.Any(None, str),
    }
)


@dataclass(frozen=True)
class EmailConfig:
    smtp_server: str
    smtp_port: int
    security: Security
    username: str | None
    password: str | None = field(repr=False)
    from_address: str
    timeout: float
    ca_certs: str | None

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> EmailConfig:
        return cls(
            smtp_server=section["smtp_server"],
            smtp_port=section["smtp_port"],
            security=Security(section["security"]),
            username=section["username"] or None,
            password=section["password"],
            from_address=section["from_address"],
            timeout=section["timeout"],
            ca_certs=section["ca_certs"],
        )


def create(section: dict[str, Any], ctx: ChannelContext) -> EmailChannel | None:
    del ctx  # email needs nothing from the service
    section = SCHEMA(section)
    if reason := why_disabled(section):
        log_disabled(NAME, reason)
        return None
    return EmailChannel(EmailConfig.from_section(section))


def why_disabled(section: dict[str, Any]) -> str | None:
    """Why a validated section cannot send, or None when it can."""
    if not section["enabled"]:
        return "enabled: false"
    if reason := unset_reason(NAME, section, ["smtp_server"]):
        return reason
    if section["username"]:  # no username: no AUTH, no password needed
        return unset_reason(NAME, section, ["password"])
    return None


class EmailChannel:
    name = NAME

    def __init__(self, config: EmailConfig) -> None:
        self._config = config

    def __repr__(self) -> str:
        return f"EmailChannel({self._config!r})"

    async def send(self, recipient: str, message: Message) -> None:
        email = self._build(recipient, message)
        cfg = self._config
        login = cfg.username is not None
        try:
            await aiosmtplib.send(
                email,
                hostname=cfg.smtp_server,
                port=cfg.smtp_port,
                # Without a username no AUTH is tried at all (contract).
                username=cfg.username if login else None,
                password=cfg.password if login else None,
                use_tls=cfg.security is Security.SSL,
                # True, not None: a server that does not offer STARTTLS must fail the
                # delivery rather than receive the password in clear text.
                start_tls=cfg.security is Security.STARTTLS,
                cert_bundle=cfg.ca_certs,
                timeout=cfg.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as err:
            raise self._error(err) from err

    async def aclose(self) -> None:
        """Nothing held between deliveries."""

    def _build(self, recipient: str, message: Message) -> EmailMessage:
        email = EmailMessage()
        try:
            email["Subject"] = message.subject
            email["From"] = self._config.from_address
            email["To"] = recipient
        except (ValueError, TypeError) as err:
            # The email package refuses header injection (CR/LF) and malformed values.
            raise DeliveryError(f"email: bad header: {err}", retryable=False) from err
        email["Date"] = formatdate(usegmt=True)
        # make_msgid() would resolve the local FQDN (a DNS lookup); the sender's
        # domain is enough to make the id globally unique.
        domain = self._config.from_address.rpartition("@")[2] or "homealert.local"
        email["Message-ID"] = f"<{uuid.uuid4().hex}@{domain}>"
        email["X-Homealert-Priority"] = message.priority
        email["X-Homealert-Alerts"] = " ".join(message.alert_ids)[:900]
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        return email

    def _error(self, err: Exception) -> DeliveryError:
        text = redact(f"email: {type(err).__name__}: {err}", [self._config.password])
        if isinstance(err, aiosmtplib.SMTPRecipientsRefused):
            codes = [refused.code for refused in err.recipients]
            return DeliveryError(text, retryable=all(400 <= c < 500 for c in codes))
        if isinstance(err, aiosmtplib.SMTPAuthenticationError | aiosmtplib.SMTPNotSupported):
            return DeliveryError(text, retryable=False)
        if isinstance(err, aiosmtplib.SMTPResponseException):
            # SMTP's own split: 4xx is transient, 5xx is final.
            return DeliveryError(text, retryable=400 <= err.code < 500, status=err.code)
        if _certificate_error(err):
            # An untrusted certificate is a configuration fault: retrying cannot help.
            return DeliveryError(text, retryable=False)
        if isinstance(
            err,
            aiosmtplib.SMTPTimeoutError
            | aiosmtplib.SMTPConnectError
            | aiosmtplib.SMTPServerDisconnected
            | OSError,
        ):
            return DeliveryError(text, retryable=True)
        return DeliveryError(text, retryable=False)


def _certificate_error(err: BaseException) -> bool:
    seen: BaseException | None = err
    for _ in range(4):  # aiosmtplib may wrap the ssl error once or twice
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
