"""Escalation tests reuse the notification tests' real servers: aiosmtpd for email, a
recording HTTP server for Slack and Twilio."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homealert_mqtt.config import Settings
from tests.notify.conftest import (  # noqa: F401 - fixtures, by name
    HttpRecorder,
    SmtpRecorder,
    http_server,
    smtp_server,
    tls_files,
)

SID = "AC00000000000000000000000000000001"
PEOPLE = {
    "oncall": ("oncall@home.test", "@oncall", "+15550000001"),
    "manager": ("manager@home.test", "@manager", "+15550000002"),
    "director": ("director@home.test", "@director", "+15550000003"),
}


def channel_config(smtp: SmtpRecorder, http: HttpRecorder) -> dict[str, Any]:
    return {
        "email": {
            "enabled": True,
            "smtp_server": "127.0.0.1",
            "smtp_port": smtp.port,
            "security": "none",
            "username": None,
            "password": None,
            "from_address": "alerts@home.test",
            "timeout": 5,
        },
        "slack": {"enabled": True, "webhook_url": f"{http.url}/slack/hook", "timeout": 5},
        "sms": {
            "enabled": True,
            "account_sid": SID,
            "auth_token": "t0ken-secret",
            "from_number": "+15550000000",
            "api_base_url": http.url,
            "timeout": 5,
        },
        "phone": {
            "enabled": True,
            "account_sid": SID,
            "auth_token": "t0ken-secret",
            "from_number": "+15550000000",
            "api_base_url": http.url,
            "timeout": 5,
        },
        "mqtt": {"enabled": False},
    }


@pytest.fixture
def escalation_settings(
    make_settings: Callable[..., Settings],
    smtp_server: Callable[..., SmtpRecorder],  # noqa: F811
    http_server: HttpRecorder,  # noqa: F811
) -> Callable[..., tuple[Settings, SmtpRecorder, HttpRecorder]]:
    def make(extra: dict[str, Any] | None = None) -> tuple[Settings, SmtpRecorder, HttpRecorder]:
        smtp = smtp_server()
        config: dict[str, Any] = {
            "channels": channel_config(smtp, http_server),
            "recipients": {
                "groups": {
                    name: {"email": [mail], "slack": [handle], "sms": [tel], "phone": [tel]}
                    for name, (mail, handle, tel) in PEOPLE.items()
                }
            },
            "alerts": {
                "escalation": {
                    "rate_limits": {
                        ch: {"count": 1000} for ch in ("sms", "phone", "email", "slack")
                    }
                }
            },
        }
        from tests.conftest import deep_update  # noqa: PLC0415

        deep_update(config, extra or {})
        return make_settings(config), smtp, http_server

    return make
