"""Two replicas on one Redis and one broker split the work and page exactly once per
(alert, level): the timers, batches and delivery keys in Redis decide who sends what."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.conftest import FakeClock
from tests.escalation.conftest import PEOPLE
from tests.escalation.sends import publish_alerts, settle
from tests.notify.conftest import HttpRecorder
from tests.probe import Probe

ALERTS = 200
ONCALL, MANAGER = PEOPLE["oncall"][2], PEOPLE["manager"][2]


def replica(name: str) -> dict[str, Any]:
    return {
        "mqtt": {"client_id": name, "shared_group": "homealert"},
        "alerts": {
            "grouping": {"enabled": False},
            "escalation": {
                "policies": {
                    "p1": [
                        {"delay": 0, "channels": ["sms"], "groups": ["oncall"]},
                        {"delay": 2, "channels": ["sms"], "groups": ["manager"]},
                    ]
                }
            },
        },
    }


def sms_bodies(http: HttpRecorder) -> list[tuple[str, str]]:
    return [
        (r.form["To"], r.form["Body"]) for r in http.requests if r.path.endswith("/Messages.json")
    ]


async def wait_sms(http: HttpRecorder, count: int, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(sms_bodies(http)) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(sms_bodies(http))} SMS within {timeout} s, not {count}")
        await asyncio.sleep(0.05)


async def test_two_replicas_page_each_alert_once_per_level(
    escalation_settings: Callable[..., Any],
    start_service: Callable[..., Any],
    probe: Probe,
    clock: FakeClock,
    unique: str,
) -> None:
    names = (f"a-{unique}", f"b-{unique}")
    replicas = []
    sent = Counter[str]()
    for name in names:
        settings, _smtp, http = escalation_settings(replica(name))
        running = await start_service(settings, clock=clock)
        running.service.escalation.delivery.on_sent.append(lambda _ch, n=name: sent.update([n]))
        replicas.append(running)

    await publish_alerts(probe.port, probe.base, "storm", ALERTS)
    created = await probe.wait_events("created", ALERTS, timeout=30)
    ids = {e["id"] for e in created}
    assert len(ids) == ALERTS
    await wait_sms(http, ALERTS)
    clock.advance(2)  # level 1 is due for all of them
    await wait_sms(http, 2 * ALERTS)
    await settle(1.0)

    rows = sms_bodies(http)
    assert len(rows) == 2 * ALERTS
    pattern = re.compile(r"\((storm-t\d+-[a-z0-9]+)\)")
    per_level = Counter()
    for to, body in rows:
        found = pattern.search(body)
        assert found, body  # the SMS names its alert
        assert found.group(1) in ids, body
        per_level[(found.group(1), to)] += 1
    expected = {(i, to): 1 for i in ids for to in (ONCALL, MANAGER)}
    assert dict(per_level) == expected

    # Each replica took alerts off the shared subscription and sent some of the SMS.
    redis = replicas[0].service.redis
    keys = replicas[0].service.keys
    # Packet-id digests are kept per "<client id>.<broker session>".
    sessions = [int(await redis.get(keys.session(name)) or 0) for name in names]
    ingested = [
        await redis.hlen(keys.seen(f"{name}.{n}")) for name, n in zip(names, sessions, strict=True)
    ]
    assert all(n > 0 for n in ingested), ingested
    assert set(sent) == set(names), sent
    assert sum(sent.values()) == 2 * ALERTS
    print(f"ingested {ingested}, sent {dict(sent)}")
