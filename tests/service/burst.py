"""Bursts of alerts, and the checks after a crash or an outage: Redis holds each alert
once with its exact count, and its retained topic holds the same state."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import zlib
from collections import Counter
from typing import Any

import aiomqtt

from homealert_mqtt.config import Settings
from tests.probe import Probe
from tests.waits import eventually, retained, store_for, stored_alerts

# aiomqtt warns about every publish beyond 10 in flight; a burst is the point here.
QUIET = logging.getLogger("tests.burst")
QUIET.setLevel(logging.ERROR)


FIELDS = ("count", "state", "message", "last_seen")


def burst(prefix: str, distinct: int, repeats: dict[str, int]) -> list[dict[str, Any]]:
    """`distinct` alerts once each, and each repeated type `n` times, interleaved."""
    alerts = [{"source": prefix, "type": f"d{i}"} for i in range(distinct)]
    for alert_type, n in repeats.items():
        alerts += [{"source": prefix, "type": alert_type, "message": f"#{i}"} for i in range(n)]
    # Deterministic interleaving: repeats spread through the distinct alerts.
    return sorted(alerts, key=lambda a: zlib.crc32(json.dumps(a).encode()))


async def publish_all(client: aiomqtt.Client, topic: str, alerts: list[dict[str, Any]]) -> None:
    await asyncio.gather(*(client.publish(topic, json.dumps(a), qos=1) for a in alerts))


async def sentinel(probe: Probe) -> None:
    """An alert published last: once it is stored, everything the broker queued before it
    was processed (one session delivers in order; the pipeline keeps that order)."""
    mark = len(probe.seen)
    await probe.alert(source="sentinel", type=uuid.uuid4().hex[:8])
    await probe.wait_for(
        f"{probe.base}/event",
        lambda s: s.json()["event"] == "created" and s.json()["source"] == "sentinel",
        after=mark,
        timeout=30,
    )


async def assert_exact(
    settings: Settings, source: str, expected: Counter[str], *, fields: tuple[str, ...] = FIELDS
) -> None:
    """Redis holds one alert per type of `source`, with count = published repeats; the
    retained topic of every stored alert holds its state."""
    async with store_for(settings) as store:
        alerts = await stored_alerts(store)
    mine = [a for a in alerts if a.source == source]
    by_type = Counter(a.type for a in mine)
    assert [t for t, n in by_type.items() if n > 1] == [], "an alert was created twice"
    counts = {a.type: a.count for a in mine}
    assert counts == dict(expected)
    mismatches: list[str] = []
    try:
        await eventually(lambda: retained_matches_redis(settings, fields, mismatches), timeout=15)
    except AssertionError as err:
        raise AssertionError(f"retained state differs from Redis: {mismatches[:10]}") from err


async def retained_matches_redis(
    settings: Settings, fields: tuple[str, ...], mismatches: list[str]
) -> bool:
    """Every stored alert's retained topic holds its state (compared until the last
    publish has arrived)."""
    async with store_for(settings) as store:
        alerts = await stored_alerts(store)
    base = settings.mqtt.base_topic
    states = await retained(settings, f"{base}/alert/+", len(alerts))
    mismatches[:] = []
    for alert in alerts:
        state = json.loads(states[f"{base}/alert/{alert.id}"])
        public = alert.to_public()
        if any(state[f] != public[f] for f in fields):
            mismatches.append(f"{alert.id}: retained {state}, Redis {public}")
    return not mismatches
