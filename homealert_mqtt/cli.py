"""The `homealert-mqtt` command: run, check-config, alerts, ack, resolve, history, silence,
test-alert, health."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from homealert_mqtt import __version__
from homealert_mqtt.config import ConfigError, Settings, load_config
from homealert_mqtt.config.loader import ENV_MQTT_URL, ENV_REDIS_URL
from homealert_mqtt.notify.registry import disabled_channels, enabled_channels, summary

_LOGGER = logging.getLogger("homealert_mqtt")
DEFAULT_DATA_DIR = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / (
    "homealert-mqtt/embedded"
)


# Every variable the service itself reads (a config file can read more with !env_var).
ENVIRONMENT = (
    ("HOMEALERT_MQTT_URL", "the broker, mqtt[s]://[user:pass@]host:port; beats mqtt.url"),
    ("HOMEALERT_REDIS_URL", "Redis, redis[s]://[:pass@]host:port/db; beats redis.url"),
    (
        "HOMEALERT_EMBEDDED_BROKER",
        "run --embedded: mosquitto or iotcore (default: the first found)",
    ),
)


def _epilog() -> str:
    width = max(len(name) for name, _ in ENVIRONMENT)
    lines = [f"  {name.ljust(width)}  {text}" for name, text in ENVIRONMENT]
    return "environment variables:\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homealert-mqtt",
        description="An MQTT-native alert manager for the home: alerts in on MQTT, state in "
        "Redis, retained state and Home Assistant discovery out.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument(
            "--config",
            metavar="PATH",
            help="YAML config file, merged over the defaults (default: the defaults alone)",
        )
        return cmd

    run = add("run", "Run the service until interrupted.")
    run.add_argument(
        "--embedded",
        action="store_true",
        help="start a local Redis and MQTT broker for the service (for trying it out)",
    )
    run.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"with --embedded: where their data lives (default: {DEFAULT_DATA_DIR})",
    )
    for server, usual in (("mqtt", 1883), ("redis", 6379)):
        run.add_argument(
            f"--{server}-port",
            type=int,
            metavar="PORT",
            help=f"with --embedded: the {server.upper()} port (default: {usual} when free, "
            "else any free one; 0: any free one)",
        )
    add("check-config", "Validate a config file; print every problem with its key path.")
    alerts = add("alerts", "List open alerts: id, state, priority, count, age.")
    alerts.add_argument("--all", action="store_true", help="include resolved alerts")
    alerts.add_argument("--json", action="store_true", help="print JSON instead of a table")
    acting = []
    for name, verb in (("ack", "Acknowledge"), ("resolve", "Resolve")):
        cmd = add(
            name,
            f"{verb} an alert: publishes the command over MQTT and waits for the service's "
            "answer (exit 1 with the reason when it refuses).",
        )
        acting.append(cmd)
        cmd.add_argument("id", help="the alert id")
        cmd.add_argument("--by", metavar="NAME", help="who does it (recorded in the state)")
        cmd.add_argument("--note", help="a note kept with the acknowledgement")
        cmd.add_argument(
            "--timeout",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="how long to wait for the service's answer (default 5)",
        )
    show = add("show", "Show one alert's state and its notification attempts.")
    show.add_argument("id", help="the alert id")
    history = add("history", "Show recent alert events, newest first.")
    history.add_argument("--source", help="only this source")
    history.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    silence = _add_silence(add)
    test = add(
        "test-alert",
        "Show what the service would do with an alert (id, priority, group, each level's "
        "time, recipients and text, what would hold it back); pages nobody.",
    )
    test.add_argument("alert", help="the alert as JSON, as a device would publish it")
    test.add_argument("--at", metavar="ISO", help="as if it came at this time (default: now)")
    test.add_argument("--json", action="store_true", help="print one JSON document")
    health = add("health", "Exit 0 when the service is connected to MQTT and Redis, else 1.")
    health.add_argument("--max-age", type=int, default=30, help="heartbeat age limit (s)")
    for cmd in (alerts, show, history, health, silence, test, *acting):
        cmd.add_argument(
            "--data-dir",
            metavar="DIR",
            type=Path,
            help="talk to the `run --embedded` using DIR (default: the one using "
            f"{DEFAULT_DATA_DIR}, when it runs and no --config or HOMEALERT_*_URL is given)",
        )
    return parser


def _add_silence(add: Callable[[str, str], argparse.ArgumentParser]) -> argparse.ArgumentParser:
    silence = add("silence", "Silence alerts for a while (maintenance), list or expire silences.")
    verbs = silence.add_subparsers(dest="verb", required=True, metavar="VERB")
    new = verbs.add_parser(
        "add",
        help="create (or replace) a silence; published over MQTT",
        description="Create or replace a silence: matching alerts are stored and shown as "
        "usual, with silenced_by in their state, and nobody is paged until it ends. "
        "Example: silence add --match source=garage --match 'type=door*' --for 2h",
    )
    new.add_argument(
        "--match",
        metavar="FIELD=GLOB",
        action="append",
        required=True,
        help="repeatable; fields: id, source, type, severity, priority, group_id, "
        "attributes.<name>; globs: * ? [...] (case-sensitive)",
    )
    when = new.add_mutually_exclusive_group(required=True)
    when.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 90m, 2h, 1d12h")
    when.add_argument("--until", metavar="ISO", help="end time, ISO 8601 (UTC unless a zone)")
    new.add_argument("--starts", metavar="ISO", help="start time (default: now)")
    new.add_argument("--id", help="silence id (default: a new one); an existing id is replaced")
    new.add_argument("--by", metavar="NAME", help="who made it")
    new.add_argument("--comment", help="why")
    listing = verbs.add_parser("list", help="list silences, pending and active (from Redis)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    gone = verbs.add_parser("expire", help="end a silence now (published over MQTT)")
    gone.add_argument("id", help="the silence id")
    for verb in (new, listing, gone):
        # Also after the verb; SUPPRESS keeps one given before it.
        verb.add_argument(
            "--config", metavar="PATH", default=argparse.SUPPRESS, help="YAML config file"
        )
    return silence


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.config)
    settings: Settings | None = None
    try:
        if args.command != "run":
            settings = load_config(args.config, environ=_environ_for_cli(args))
        elif not args.embedded:
            settings = load_config(args.config)
    except ConfigError as err:
        print_problems(args.config, err)
        return 1
    from homealert_mqtt import cli_commands  # noqa: PLC0415 - keeps check-config light

    if args.command == "run":
        return cli_commands.run(args, settings)
    assert settings is not None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    handlers = {
        "alerts": cli_commands.list_alerts,
        "ack": cli_commands.send_command,
        "resolve": cli_commands.send_command,
        "history": cli_commands.show_history,
        "show": cli_commands.show_alert,
        "health": cli_commands.health,
        "silence": cli_commands.silence,
        "test-alert": cli_commands.test_alert,
    }
    try:
        return asyncio.run(handlers[args.command](args, settings))
    except KeyboardInterrupt:
        return 130


def _environ_for_cli(args: argparse.Namespace) -> dict[str, str] | None:
    """The environment, plus the URLs of a running `run --embedded` when nothing else
    names the servers (its ports may not be the usual ones: they were busy)."""
    if ENV_MQTT_URL in os.environ or ENV_REDIS_URL in os.environ:
        return None
    if args.config is not None and args.data_dir is None:
        return None
    from homealert_mqtt.embedded import running_endpoints  # noqa: PLC0415

    ends = running_endpoints(args.data_dir or DEFAULT_DATA_DIR)
    if ends is None:
        if args.data_dir is not None:
            print(f"no `run --embedded` is using {args.data_dir}", file=sys.stderr)
        return None
    return {**os.environ, ENV_MQTT_URL: ends.mqtt_url, ENV_REDIS_URL: ends.redis_url}


def _check_config(path: str | None) -> int:
    try:
        settings = load_config(path)
    except ConfigError as err:
        print_problems(path, err)
        return 1
    where = path or "built-in defaults"
    broker = "auto (zeroconf)" if settings.mqtt.discover else settings.mqtt.safe_url()
    print(f"{where}: OK (broker {broker}, Redis {settings.redis.safe_url()})")
    disabled = disabled_channels(settings.channels)
    if disabled:
        print("channels that will send nothing:")
        for name, reason in disabled.items():
            print(f"  {name}: {reason}")
    print(summary(enabled_channels(settings.channels)))
    return 0


def print_problems(path: str | None, err: ConfigError) -> None:
    print(f"{path or 'config'}: {len(err.problems)} problem(s)", file=sys.stderr)
    for problem in err.problems:
        print(f"  {problem}", file=sys.stderr)


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
