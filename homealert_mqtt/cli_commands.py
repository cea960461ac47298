"""What the CLI's subcommands do (cli.py only parses arguments)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiomqtt

from homealert_mqtt.clock import wall_ms
from homealert_mqtt.config import ConfigError, Settings, load_config
from homealert_mqtt.mqtt.client_options import client_kwargs
from homealert_mqtt.redis_client import make_redis
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.store.keys import Keys
from homealert_mqtt.topics import CommandKind, Topics

_LOGGER = logging.getLogger("homealert_mqtt")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # paho/aiomqtt log every reconnect at ERROR; our own line says it better. (aiomqtt's
    # clients log to "mqtt" unless given a logger.)
    logging.getLogger("aiomqtt").setLevel(logging.CRITICAL)
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    # twilio logs every request's headers at INFO (nine lines an SMS): a storm would
    # bury the lines that matter. The delivery log (`show <id>`) has each attempt.
    logging.getLogger("twilio").setLevel(max(logging.WARNING, logging.root.level))


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from homealert_mqtt.embedded import EmbeddedError, embedded_servers  # noqa: PLC0415

    if not args.embedded:
        assert settings is not None
        configure_logging(settings.log_level)
        return _run_until_signal(settings)
    configure_logging("info")
    try:
        with embedded_servers(
            args.data_dir, mqtt_port=args.mqtt_port, redis_port=args.redis_port
        ) as ends:
            env = dict(os.environ)
            env["HOMEALERT_MQTT_URL"] = ends.mqtt_url
            env["HOMEALERT_REDIS_URL"] = ends.redis_url
            settings = load_config(args.config, environ=env)
            settings = dataclasses.replace(
                settings, mqtt=dataclasses.replace(settings.mqtt, protocol=ends.mqtt_protocol)
            )
            configure_logging(settings.log_level)
            _print_tour(settings, ends.mqtt_port, ends.redis_port, args.data_dir)
            return _run_until_signal(settings)
    except EmbeddedError as err:
        _LOGGER.error("cannot start the embedded servers: %s", err)  # noqa: TRY400
        return 1
    except ConfigError as err:
        from homealert_mqtt.cli import print_problems  # noqa: PLC0415 - cli imports us

        print_problems(args.config, err)
        return 1


def _print_tour(settings: Settings, mqtt_port: int, redis_port: int, data_dir: Path) -> None:
    from homealert_mqtt.cli import DEFAULT_DATA_DIR  # noqa: PLC0415 - cli imports us

    base = settings.mqtt.base_topic
    where = "" if data_dir == DEFAULT_DATA_DIR else f" --data-dir {data_dir}"
    print(
        f"""
homealert-mqtt is running on an embedded broker (127.0.0.1:{mqtt_port}) and Redis
(127.0.0.1:{redis_port}). This is for trying it out; a house wants a real Mosquitto and
Redis (see README, "Running it for real").

Publish a test alert:
  mosquitto_pub -p {mqtt_port} -q 1 -t {base}/in -m \\
    '{{"source": "basement", "type": "water_leak", "severity": "critical", "message": "Water!"}}'
See its retained state:   mosquitto_sub -p {mqtt_port} -t '{base}/#' -v
Its notification (P1-P3): mosquitto_sub -p {mqtt_port} -t '{base}/notify/#' -v
List open alerts:         homealert-mqtt alerts{where}
Acknowledge one:          homealert-mqtt ack <id> --by you{where}
(the CLI finds these ports in {data_dir}; from elsewhere set
 HOMEALERT_MQTT_URL=mqtt://127.0.0.1:{mqtt_port} HOMEALERT_REDIS_URL=redis://127.0.0.1:{redis_port}/0)
""",
        flush=True,
    )


def _run_until_signal(settings: Settings) -> int:
    from homealert_mqtt.app import build_service  # noqa: PLC0415

    async def main() -> None:
        service = build_service(settings)
        task = asyncio.ensure_future(service.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with suppress(asyncio.CancelledError):
            await task
        _LOGGER.info("stopped")

    asyncio.run(main())
    return 0


def _store(settings: Settings) -> AlertStore:
    redis = make_redis(settings.redis)
    return AlertStore(redis, Keys.for_prefix(settings.redis.key_prefix), settings.alerts, wall_ms)


def _age(ms: int) -> str:
    seconds = max(0, (wall_ms() - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


async def list_alerts(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    try:
        ids = await (store.stored_ids() if args.all else store.open_ids())
        alerts = await store.get_alerts(ids)
    finally:
        await store.redis.aclose()
    alerts.sort(key=lambda a: (a.state.value == "resolved", a.priority.rank, -a.first_seen))
    if args.json:
        print(json.dumps([a.to_public() for a in alerts], indent=2, ensure_ascii=False))
        return 0
    if not alerts:
        print("no open alerts" if not args.all else "no alerts")
        return 0
    rows = [("ID", "STATE", "PRIO", "COUNT", "AGE", "MESSAGE")]
    rows += [
        (a.id, a.state.value, a.priority.value, str(a.count), _age(a.first_seen), a.message[:50])
        for a in alerts
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    return 0


async def send_command(args: argparse.Namespace, settings: Settings) -> int:
    """Publish the command with a request id and wait for the service's answer on
    `<base>/response/<request id>`: exit 0 when it was carried out, 1 with the reason
    when it was refused or no answer came."""
    topics = Topics(settings.mqtt.base_topic)
    kind = CommandKind.ACK if args.command == "ack" else CommandKind.RESOLVE
    request_id = f"cli-{uuid.uuid4().hex[:16]}"
    fields = (("by", args.by), ("note", args.note), ("request_id", request_id))
    payload = json.dumps({k: v for k, v in fields if v})
    try:
        async with aiomqtt.Client(**cli_client_kwargs(settings)) as client:
            await client.subscribe(topics.response(request_id), qos=1)
            await client.publish(topics.alert_command(args.id, kind), payload.encode(), qos=1)
            answer = None
            with suppress(TimeoutError):
                async with asyncio.timeout(args.timeout):
                    answer = await _answer(client)
    except aiomqtt.MqttError as err:
        print(f"cannot reach the broker at {settings.mqtt.safe_url()}: {err}")
        return 1
    if answer is None:
        print(
            f"no answer from the service within {args.timeout:g} s (is it running, on "
            f"{settings.mqtt.safe_url()} with base topic {topics.base!r}?); the {kind.value} "
            "was sent and is carried out when the service reads it"
        )
        return 1
    return _print_answer(answer, kind.value, args.id)


async def _answer(client: aiomqtt.Client) -> dict[str, Any] | None:
    """The first JSON object on the one topic subscribed to."""
    async for message in client.messages:
        if isinstance(message.payload, bytes):
            with suppress(ValueError):
                answer = json.loads(message.payload)
                if isinstance(answer, dict):
                    return answer
    return None


def _print_answer(answer: dict[str, Any], verb: str, alert_id: str) -> int:
    if not answer.get("ok"):
        print(f"{verb} failed: {answer.get('error') or 'refused'}")
        return 1
    if answer.get("outcome") == "unchanged":
        print(f"{alert_id} was already {answer.get('state')}; nothing changed")
    else:
        print(f"{alert_id} {answer.get('outcome')} (state {answer.get('state')})")
    return 0


async def show_alert(args: argparse.Namespace, settings: Settings) -> int:
    from homealert_mqtt.store.escalation_store import EscalationStore  # noqa: PLC0415

    store = _store(settings)
    try:
        alert = await store.get_alert(args.id)
        attempts = await EscalationStore(store, wall_ms).attempts(args.id) if alert else []
    finally:
        await store.redis.aclose()
    if alert is None:
        print(f"no alert {args.id!r}")
        return 1
    print(json.dumps({**alert.to_public(), "attempts": attempts}, indent=2, ensure_ascii=False))
    return 0


async def show_history(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    try:
        entries = await store.history(args.source, args.limit)
    finally:
        await store.redis.aclose()
    if not entries:
        print("no history")
        return 0
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at / 1000))
        print(f"{when}  {e.source:<20} {e.event:<13} {e.priority}  {e.type:<20} {e.id}")
    return 0


async def health(args: argparse.Namespace, settings: Settings) -> int:
    keys = Keys.for_prefix(settings.redis.key_prefix)
    redis = make_redis(settings.redis)
    try:
        beat = await asyncio.wait_for(redis.hgetall(keys.replica(settings.mqtt.client_id)), 5)
    except Exception as err:  # noqa: BLE001 - any failure means unhealthy
        print(f"unhealthy: Redis at {settings.redis.safe_url()} unreachable: {err}")
        return 1
    finally:
        await redis.aclose()
    if not beat:
        print(f"unhealthy: no heartbeat from {settings.mqtt.client_id!r}")
        return 1
    age = (wall_ms() - int(beat[b"at"])) / 1000
    if age > args.max_age:
        print(f"unhealthy: last heartbeat {age:.0f} s ago")
        return 1
    if beat.get(b"mqtt") != b"1":
        print("unhealthy: not connected to the MQTT broker")
        return 1
    print(f"healthy: heartbeat {age:.1f} s ago")
    return 0


def cli_client_kwargs(settings: Settings) -> dict[str, Any]:
    """A short-lived CLI client's options. MQTT 3.1.1: every broker speaks it, the iotcore
    fallback of `run --embedded` nothing else (so an answer's address is in the payload,
    not in MQTT 5 properties)."""
    return client_kwargs(
        dataclasses.replace(settings.mqtt, protocol=4),
        settings.mqtt.host,
        settings.mqtt.port,
        client_id=f"homealert-cli-{os.getpid()}",
        persistent=False,
    )


async def publish_once(settings: Settings, topic: str, payload: bytes) -> bool:
    """One QoS 1 publish to the service; False (and a message) when the broker is away."""
    try:
        async with aiomqtt.Client(**cli_client_kwargs(settings)) as client:
            await client.publish(topic, payload, qos=1)
    except aiomqtt.MqttError as err:
        print(f"cannot reach the broker at {settings.mqtt.safe_url()}: {err}")
        return False
    return True


async def test_alert(args: argparse.Namespace, settings: Settings) -> int:
    from homealert_mqtt.noise import cli as silence_cli  # noqa: PLC0415

    return await silence_cli.test_alert(args, settings)


async def silence(args: argparse.Namespace, settings: Settings) -> int:
    from homealert_mqtt.noise import cli as silence_cli  # noqa: PLC0415

    return await silence_cli.run(args, settings)
