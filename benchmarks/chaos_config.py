"""The chaos soak's service config (`chaos_soak.py`): who is paged at which level, and
a template that makes every page name its alert and level."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chaos_ledger import Level

HOST = "127.0.0.1"
SID = "ACsoak000000000000000000000000000"
FROM = "+15559999999"
CHANNELS = ("email", "slack", "sms", "phone", "mqtt")


def recipients(level: int) -> dict[str, str]:
    """One recipient group per level (`l<n>`), one address per channel: who was paged
    names the level, and the template names it too."""
    return {
        "email": f"l{level}@soak.test",
        "slack": f"soak_l{level}",
        "sms": f"+1555000000{level}",
        "phone": f"+1555000010{level}",
        "mqtt": f"l{level}",  # the mqtt channel addresses the group by name
    }


def policy_levels(delays: list[float]) -> list[Level]:
    return [
        Level(delay, tuple((ch, recipients(n)[ch]) for ch in CHANNELS))
        for n, delay in enumerate(delays)
    ]


# Every block names the kind, the level and the alert ids, so a page is attributable.
TEMPLATE = """{% block tag %}SOAK:{{ kind }}:{{ level }}:{% for a in alerts %}{{ a.id }}\
{{ "," if not loop.last }}{% endfor %}:END{% endblock %}
{% block subject %}{{ self.tag() }}{% endblock %}
{% block text %}{{ self.tag() }}{% endblock %}
{% block html %}<p>{{ self.tag() }}</p>{% endblock %}
{% block short %}{{ self.tag() }}{% endblock %}
{% block voice %}{{ self.tag() }}{% endblock %}
{% block slack %}{{ self.tag() }}{% endblock %}
"""


def service_config(
    *,
    levels: list[int],
    lease: int,
    base: str,
    key_prefix: str,
    client_id: str,
    mqtt_port: int,
    redis_port: int,
    smtp_port: int,
    http_url: str,
    templates: Path,
) -> dict[str, Any]:
    """The service's config: grouping off (each alert its own batch), one policy for every
    priority, every level on every channel to its own recipient group, rate limits out of
    the way, no resolved notices, the soak's template; `lease` 0 keeps the default."""
    policy = [
        {"delay": d, "channels": list(CHANNELS), "groups": [f"l{n}"]} for n, d in enumerate(levels)
    ]
    twilio = {
        "enabled": True,
        "account_sid": SID,
        "auth_token": "soak-token",
        "from_number": FROM,
        "api_base_url": http_url,
        "timeout": 5,
    }
    escalation: dict[str, Any] = {
        "policies": dict.fromkeys(("p1", "p2", "p3", "p4", "p5", "default"), policy),
        "rate_limits": {ch: {"count": 100_000_000, "period": 3600} for ch in CHANNELS},
        "notify_resolved": False,
    }
    if lease:
        escalation["lease"] = lease
    return {
        "mqtt": {
            "url": f"mqtt://{HOST}:{mqtt_port}",
            "base_topic": base,
            "client_id": client_id,
        },
        "redis": {"url": f"redis://{HOST}:{redis_port}/0", "key_prefix": key_prefix},
        "alerts": {"grouping": {"enabled": False}, "escalation": escalation},
        "channels": {
            "email": {
                "enabled": True,
                "smtp_server": HOST,
                "smtp_port": smtp_port,
                "security": "none",
                "username": None,
                "password": None,
                "from_address": "homealert@soak.test",
                "timeout": 5,
            },
            "slack": {
                "enabled": True,
                "webhook_url": f"{http_url}/slack/hook",
                "mention_users": {f"p{i}": [] for i in range(1, 6)},
                "timeout": 5,
            },
            "sms": twilio,
            "phone": twilio,
            "mqtt": {"enabled": True, "timeout": 5},
        },
        "recipients": {
            "groups": {
                f"l{n}": {ch: [r] for ch, r in recipients(n).items() if ch != "mqtt"}
                for n in range(len(policy))
            }
        },
        "templates": {
            "base_dir": str(templates),
            "default_template": "soak.j2",
            "custom_templates": {},
        },
        "homeassistant": {"discovery": False},
        "http": {"enabled": False},
        "zeroconf": {"announce": False},
    }
