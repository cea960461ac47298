"""Broker sessions are numbered so that packet-id digests of a session the broker forgot
never match the next session's packet ids (which start again at 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homealert_mqtt.store.alert_store import IngestRequest
from tests.requests import bare_request
from tests.servers import MosquittoServer
from tests.waits import eventually

pytestmark = pytest.mark.slow


def request(client: str, *, dup: bool) -> IngestRequest:
    return bare_request(
        "open",
        fingerprint="f" * 32,
        base_id="door-open-ffffffff",
        source="door",
        client_id=client,
        mid=1,
        dup=dup,
        digest="d" * 24,
    )


async def session_number(service) -> int:  # type: ignore[no-untyped-def]
    value = await service.redis.get(service.keys.session(service.settings.mqtt.client_id))
    return int(value or 0)


async def test_a_forgotten_session_gets_a_new_number_and_its_digests_go(
    tmp_path: Path, make_settings, start_service
) -> None:
    broker = MosquittoServer(tmp_path / "mosquitto", persistence=False).start()
    try:
        settings = make_settings(mqtt_url=broker.url)
        running = await start_service(settings)
        service = running.service
        client_id = settings.mqtt.client_id
        first = await session_number(service)
        store = service.store
        # A digest the old session left: the same packet id and content, flagged DUP.
        outcome = (await store.ingest_many([request(f"{client_id}.{first}", dup=False)]))[0]
        assert outcome.outcome == "created"
        again = (await store.ingest_many([request(f"{client_id}.{first}", dup=True)]))[0]
        assert again.outcome == "redelivered"  # same session: it was committed already

        broker.stop()  # without persistence: the broker forgets the session
        await eventually(lambda: not service.mqtt_connected, what="service offline")
        broker.start()
        await eventually(lambda: service.mqtt_connected, timeout=20, what="reconnected")
        second = await session_number(service)
        assert second == first + 1
        assert not await service.redis.exists(service.keys.seen(f"{client_id}.{first}"))
        fresh = (await store.ingest_many([request(f"{client_id}.{second}", dup=True)]))[0]
        assert fresh.outcome == "deduplicated"  # processed, not taken for a redelivery
    finally:
        broker.stop()


async def test_a_resumed_session_keeps_its_number(
    tmp_path: Path, make_settings, start_service
) -> None:
    broker = MosquittoServer(tmp_path / "mosquitto").start()  # persistence on
    try:
        settings = make_settings(mqtt_url=broker.url)
        running = await start_service(settings)
        service = running.service
        first = await session_number(service)
        broker.stop()
        await eventually(lambda: not service.mqtt_connected, what="service offline")
        broker.start()
        await eventually(lambda: service.mqtt_connected, timeout=20, what="reconnected")
        assert await session_number(service) == first
    finally:
        broker.stop()
