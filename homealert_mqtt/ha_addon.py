"""The Home Assistant app (add-on): its options (`/data/options.json`) and the broker the
Supervisor gives it, turned into a homealert-mqtt config file (homeassistant-addon/).

Run by the app's s6 service before the service starts:

    python3 -m homealert_mqtt.ha_addon --options /data/options.json \\
        --user-config /config/homealert.yaml --out /data/homealert.yaml

The broker comes from the environment (MQTT_HOST, MQTT_PORT, MQTT_USERNAME,
MQTT_PASSWORD, MQTT_SSL), which the run script fills from the Supervisor's services API
with bashio. A homealert.yaml in the app's config folder replaces the options; the
broker, Redis and the health endpoint are set here in either case, because the app's
container decides them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from homealert_mqtt.config import ConfigError, load_config
from homealert_mqtt.config.loader import deep_merge

# What the app's container fixes: its own Redis (rootfs/etc/homealert/redis.conf) and the
# health endpoint the Supervisor's watchdog asks (config.yaml: watchdog).
REDIS_URL = "redis://127.0.0.1:6379/0"
HEALTH_PORT = 9466
CLIENT_ID = "homealert-ha-app"  # stable, so the broker keeps the persistent session
GROUP = "oncall"


def broker_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The `mqtt` settings for the broker the Supervisor named (credentials as keys of
    their own: no quoting problems with characters a URL would need escaped)."""
    host = env.get("MQTT_HOST", "").strip()
    if not host:
        raise ValueError("MQTT_HOST is empty: the Supervisor named no MQTT broker")
    port = int(env.get("MQTT_PORT") or 1883)
    secure = env.get("MQTT_SSL", "").strip().lower() == "true"
    host_part = f"[{host}]" if ":" in host else host
    return {
        "url": f"{'mqtts' if secure else 'mqtt'}://{host_part}:{port}",
        "username": env.get("MQTT_USERNAME") or None,
        "password": env.get("MQTT_PASSWORD") or None,
        "client_id": CLIENT_ID,
    }


def config_from_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The app's options (config.yaml: options/schema) as a homealert-mqtt config."""
    smtp, twilio = options["smtp"], options["twilio"]
    webhook = options["slack_webhook_url"]
    recipients = {ch: list(addrs) for ch, addrs in options["recipients"].items() if addrs}
    later = options["escalate_after_minutes"] * 60
    first = ["mqtt", "email", "slack", "sms"]
    return {
        "logging": {"level": options["log_level"]},
        "mqtt": {"base_topic": options["base_topic"]},
        "homeassistant": {"discovery": True, "discovery_prefix": options["discovery_prefix"]},
        "channels": {
            "email": {
                "enabled": bool(smtp["server"]),
                "smtp_server": smtp["server"] or None,
                "smtp_port": smtp["port"],
                "security": smtp["security"],
                "username": smtp["username"] or None,
                "password": smtp["password"] or None,
                "from_address": smtp["from_address"] or "homealert@localhost",
            },
            "slack": {"enabled": bool(webhook), "webhook_url": webhook or None},
            **{
                channel: {
                    "enabled": bool(twilio["account_sid"]),
                    "account_sid": twilio["account_sid"] or None,
                    "auth_token": twilio["auth_token"] or None,
                    "from_number": twilio["from_number"] or None,
                }
                for channel in ("sms", "phone")
            },
            "mqtt": {"enabled": True},
        },
        # One group: the people the options list; the MQTT channel notifies
        # <base>/notify/oncall for Home Assistant automations in any case.
        "recipients": {"groups": {GROUP: recipients}},
        "alerts": {
            "escalation": {
                "policies": {
                    "p1": [
                        {"delay": 0, "channels": first, "groups": [GROUP]},
                        {"delay": later, "channels": [*first, "phone"], "groups": [GROUP]},
                    ],
                    "p2": [
                        {"delay": 0, "channels": ["mqtt", "email", "slack"], "groups": [GROUP]},
                        {"delay": later, "channels": first, "groups": [GROUP]},
                    ],
                    "p3": [{"delay": 0, "channels": ["mqtt", "email", "slack"], "groups": [GROUP]}],
                    "default": [{"delay": 0, "channels": ["mqtt"], "groups": [GROUP]}],
                }
            }
        },
    }


def app_config(
    options: Mapping[str, Any], user_config: Mapping[str, Any] | None, env: Mapping[str, str]
) -> dict[str, Any]:
    """The whole config file: the user's homealert.yaml, or else the options, with what
    the container fixes on top."""
    base = dict(user_config) if user_config is not None else config_from_options(options)
    fixed = {
        "mqtt": broker_from_env(env),
        "redis": {"url": REDIS_URL},
        "http": {"enabled": True, "host": "0.0.0.0", "port": HEALTH_PORT},  # noqa: S104
    }
    return deep_merge(base, fixed)


def _read_user_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a mapping at the top level")
    return data


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m homealert_mqtt.ha_addon")
    parser.add_argument("--options", type=Path, required=True)
    parser.add_argument("--user-config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    environ = os.environ if env is None else env
    try:
        options = json.loads(args.options.read_text(encoding="utf-8"))
        user = _read_user_config(args.user_config)
        config = app_config(options, user, environ)
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as err:
        print(f"homealert app: {err!s}", file=sys.stderr)
        return 1
    # Written before it is checked, so that check-config can point into the file; 0600
    # from the start: it holds the broker's password.
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(config, out, sort_keys=False)
    try:
        load_config(args.out, environ={})
    except ConfigError as err:
        print(f"{args.out}: {len(err.problems)} problem(s)", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    source = args.user_config if user is not None else "the app's options"
    print(f"homealert app: config from {source} written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
