"""Noise-control tests page over the escalation tests' real servers (SMTP, HTTP)."""

from __future__ import annotations

from typing import Any

from tests.escalation.conftest import (  # noqa: F401 - fixtures, by name
    PEOPLE,
    escalation_settings,
    http_server,
    smtp_server,
    tls_files,
)

ONCALL, MANAGER = PEOPLE["oncall"][2], PEOPLE["manager"][2]
LEAK = {"source": "basement", "type": "water_leak", "severity": "critical", "message": "Water!"}


def sms_policy(*, lease: int = 90, **alerts: Any) -> dict[str, Any]:
    """P1 by SMS: oncall at once, manager after 15 minutes; no grouping."""
    return {
        "alerts": {
            "grouping": {"enabled": False},
            "escalation": {
                "policies": {
                    "p1": [
                        {"delay": 0, "channels": ["sms"], "groups": ["oncall"]},
                        {"delay": 900, "channels": ["sms"], "groups": ["manager"]},
                    ]
                },
                "lease": lease,
            },
            **alerts,
        }
    }
