"""`homealert-mqtt silence add|list|expire`: changes go over MQTT (the service checks and
stores them, and answers bad ones on `<base>/error`), the list is read from Redis."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import uuid
from typing import Any

from redis.exceptions import RedisError

from homealert_mqtt.clock import wall_ms
from homealert_mqtt.config import Settings
from homealert_mqtt.noise.matchers import BadMatcher, Matcher
from homealert_mqtt.noise.routing_check import World, check, describe
from homealert_mqtt.noise.silences import MAX_SECONDS, BadSilence, parse_time
from homealert_mqtt.noise.store import SilenceStore
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.topics import Topics

REDIS_WAIT_S = 3
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


def parse_duration(text: str) -> int:
    """`90m`, `2h`, `1d12h`, `45s` or plain seconds, as seconds."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 90m, 2h, 1d12h)")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if total <= 0 or total > MAX_SECONDS:
        raise ValueError(f"a duration from 1 s to a year, got {text!r}")
    return total


def parse_matches(items: list[str]) -> dict[str, str]:
    matchers: dict[str, str] = {}
    for item in items:
        name, sep, pattern = item.partition("=")
        if not sep:
            raise ValueError(f"--match {item!r}: expected FIELD=GLOB")
        matchers[name.strip()] = pattern
    Matcher.parse(matchers, "--match")
    return matchers


def add_payload(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"matchers": parse_matches(args.match)}
    if args.duration:
        body["duration"] = parse_duration(args.duration)
    else:
        body["ends_at"] = args.until
    for key, value in (("starts_at", args.starts), ("by", args.by), ("comment", args.comment)):
        if value:
            body[key] = value
    return body


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from homealert_mqtt.cli_commands import publish_once  # noqa: PLC0415 - it imports us

    topics = Topics(settings.mqtt.base_topic)
    if args.verb == "list":
        return await _list(args, settings)
    if args.verb == "expire":
        if not await publish_once(settings, f"{topics.silence(args.id)}/expire", b""):
            return 1
        print(f"sent expire for silence {args.id}; its topic {topics.silence(args.id)} clears")
        return 0
    try:
        body = add_payload(args)
    except (ValueError, BadMatcher) as err:
        print(f"silence add: {err}")
        return 2
    silence_id = args.id or f"s-{uuid.uuid4().hex[:10]}"
    payload = json.dumps(body, ensure_ascii=False).encode()
    if not await publish_once(settings, f"{topics.silence(silence_id)}/set", payload):
        return 1
    print(
        f"sent silence {silence_id}; its state appears on {topics.silence(silence_id)} "
        f"(a refusal on {topics.error})"
    )
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    from homealert_mqtt.cli_commands import _store  # noqa: PLC0415

    alerts = _store(settings)
    try:
        silences = await SilenceStore(alerts, wall_ms).load()
    finally:
        await alerts.redis.aclose()
    now = wall_ms()
    public = [s.to_public(now) for s in sorted(silences, key=lambda s: s.ends_at)]
    if args.json:
        print(json.dumps(public, indent=2, ensure_ascii=False))
        return 0
    if not public:
        print("no silences")
        return 0
    for s in public:
        matchers = " ".join(f"{k}={v}" for k, v in s["matchers"].items())
        print(f"{s['id']:<24} {s['state']:<8} until {s['ends_at']}  {matchers}")
        if s["comment"] or s["created_by"]:
            print(f"{'':<24} by {s['created_by'] or '?'}: {s['comment'] or ''}")
    return 0


async def test_alert(args: argparse.Namespace, settings: Settings) -> int:
    """`homealert-mqtt test-alert`: the routing check (noise/routing_check.py)."""
    from homealert_mqtt.cli_commands import _store  # noqa: PLC0415
    from homealert_mqtt.escalation.setup import renderer_for  # noqa: PLC0415
    from homealert_mqtt.pipeline.validate import Rejected  # noqa: PLC0415

    try:
        at = parse_time(args.at, "--at") if args.at else wall_ms()
    except BadSilence as err:
        print(f"test-alert: {err}")
        return 1
    renderer = renderer_for(settings)
    alerts = _store(settings)
    try:
        world = await _world(alerts)
    finally:
        await alerts.redis.aclose()
    try:
        report = check(settings, args.alert.encode(), at, world, renderer)
    except Rejected as err:
        print(f"test-alert: not an alert the service would take: {err}")
        return 1
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(describe(report))
    return 0


async def _world(alerts: AlertStore) -> World:
    """Silences and open alerts from Redis; a World that says why not when it is away."""
    try:
        async with asyncio.timeout(REDIS_WAIT_S):
            silences = await SilenceStore(alerts, wall_ms).load()
            open_alerts = await alerts.get_alerts(await alerts.open_ids())
    except (RedisError, OSError, TimeoutError) as err:
        return World(reachable=False, note=f"{type(err).__name__}: {err}"[:200])
    return World(reachable=True, silences=silences, open_alerts=open_alerts)
