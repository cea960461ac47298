"""The `mqtt` channel with the broker away: a notification that never reached the broker
is `failed` (after its retries) in the delivery log, never `sent`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from homealert_mqtt.config import Settings
from homealert_mqtt.mqtt.link import BrokerUnavailableError
from tests.conftest import FakeClock
from tests.probe import Probe
from tests.servers import MosquittoServer
from tests.waits import eventually


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """A broker of this test's own, to stop while the service runs."""
    server = MosquittoServer(tmp_path / "mosquitto").start()
    yield server
    server.stop()


def config() -> dict[str, Any]:
    return {
        "channels": {"mqtt": {"enabled": True, "timeout": 1}},
        "recipients": {"groups": {"oncall": {}, "manager": {}}},
        "alerts": {
            "grouping": {"enabled": False},
            "escalation": {
                # A 4 s lease: one delivery's retries stop after 2 s.
                "lease": 4,
                "policies": {
                    "p1": [
                        {"delay": 0, "channels": ["mqtt"], "groups": ["oncall"]},
                        {"delay": 60, "channels": ["mqtt"], "groups": ["manager"]},
                    ]
                },
            },
        },
    }


async def attempts_of(store: Any, alert_id: str, count: int) -> list[Any]:
    async def enough() -> bool:
        return len(await store.attempts(alert_id)) >= count

    await eventually(enough, what=f"{count} attempts recorded")
    return list(await store.attempts(alert_id))


async def test_a_notification_the_broker_never_got_is_failed_not_sent(
    make_settings: Callable[..., Settings],
    start_service: Callable[..., Any],
    own_broker: MosquittoServer,
    clock: FakeClock,
    unique: str,
) -> None:
    settings = make_settings(config(), mqtt_url=own_broker.url)
    running = await start_service(settings, clock=clock)
    service = running.service
    store = service.escalation.store
    async with Probe(own_broker.port, f"t{unique}") as probe:
        await probe.alert(source="basement", type="water_leak", severity="critical")
        [created] = await probe.wait_events("created", 1)
        alert_id = created["id"]
        notified = await probe.wait_for(f"t{unique}/notify/oncall", lambda m: True)
        assert alert_id in notified.payload.decode()
    [first] = await attempts_of(store, alert_id, 1)
    assert (first["outcome"], first["recipient"], first["level"]) == ("sent", "oncall", 0)

    own_broker.stop()
    await eventually(lambda: not service.outbound.connected.is_set(), what="the link down")
    with pytest.raises(BrokerUnavailableError):
        await service.outbound.publish_confirmed(f"t{unique}/x", b"x")

    clock.advance(60)  # level 1 is due while the broker is away
    latest, _ = await attempts_of(store, alert_id, 2)
    assert (latest["outcome"], latest["recipient"], latest["level"]) == (
        "failed",
        "manager",
        1,
    )
    assert latest["attempts"] >= 2, latest  # retried within its deadline, then given up
    assert "broker" in latest["error"], latest
