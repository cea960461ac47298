"""The service against servers set up as a house should set them up: MQTT 3.1.1, a
password file, a TLS listener, Redis with a password and with TLS. No password may appear
in the service's log or on any retained topic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiomqtt
import pytest

from homealert_mqtt.app import build_service
from homealert_mqtt.config import Settings
from tests.certs import Certs, make_certs
from tests.probe import Probe
from tests.servers import MosquittoServer, RedisServer
from tests.service.burst import sentinel
from tests.waits import eventually, store_for

pytestmark = pytest.mark.slow

BROKER_PASSWORD = "br0ker:p@ss/word"  # noqa: S105 - quoted in URLs: ":", "@", "/"
REDIS_PASSWORD = "r3dis p@ss"  # noqa: S105
PROBE_PASSWORD = "pr0be-pass"  # noqa: S105


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@contextlib.contextmanager
def running(server: Any) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def broker_url(broker: MosquittoServer, user: str, password: str) -> str:
    scheme, rest = broker.url.split("://", 1)
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def client_tls(certs: Certs) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs.ca))


async def everything_retained(port: int, **client: Any) -> dict[str, bytes]:
    """Every retained message on the broker: subscribe to `#`, then wait for a live
    message sent after the subscription (the retained ones come before it)."""
    found: dict[str, bytes] = {}
    marker = f"marker/{uuid.uuid4().hex}"
    async with aiomqtt.Client("127.0.0.1", port, **client) as mqtt:
        await mqtt.subscribe("#", qos=1)
        await mqtt.publish(marker, b"", qos=1)
        async with asyncio.timeout(10):
            async for message in mqtt.messages:
                if str(message.topic) == marker:
                    break
                if message.retain:
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    found[str(message.topic)] = payload
    return found


def assert_no_secret(texts: list[str] | dict[str, bytes], *secrets: str) -> None:
    if isinstance(texts, dict):
        texts = [f"{t} {p.decode(errors='replace')}" for t, p in texts.items()]
    for secret in secrets:
        for variant in {secret, quote(secret, safe=""), quote(secret)}:
            leaks = [t for t in texts if variant in t]
            assert leaks == [], f"{variant!r} leaked: {leaks[:3]}"


async def exercise(settings: Settings, start_service: Any, probe: Probe) -> tuple[str, Any]:
    """An alert in, its state out, an ack over MQTT: the whole way through."""
    handle = await start_service(settings)
    await probe.wait_for(f"{probe.base}/status", lambda s: s.payload == b"online")
    await probe.alert(source="garage", type="door_open", severity="high")
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    alert_id = str(created.json()["id"])
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", {"by": "anna"})
    await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
    return alert_id, handle


async def test_mqtt_3_1_1_end_to_end_and_its_persistent_session(
    make_settings, start_service, probe: Probe
) -> None:
    settings = make_settings({"mqtt": {"protocol": "3.1.1"}})
    assert settings.mqtt.protocol == 4
    _, handle = await exercise(settings, start_service, probe)
    await handle.stop()
    # Queued while no service runs (clean_session=false keeps the subscription).
    for i in range(5):
        await probe.alert(source="queued", type="t", message=f"#{i}")
    await start_service(settings)
    await sentinel(probe)
    async with store_for(settings) as store:
        alerts = await store.get_alerts(await store.open_ids())
    assert [a.count for a in alerts if a.source == "queued"] == [5]


async def test_broker_password_file(
    tmp_path: Path, make_settings, start_service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    users = {"homealert": BROKER_PASSWORD, "probe": PROBE_PASSWORD}
    with running(MosquittoServer(tmp_path / "mosquitto", users=users)) as broker:
        with pytest.raises(aiomqtt.MqttError):  # anonymous clients are refused
            async with aiomqtt.Client("127.0.0.1", broker.port, timeout=5):
                pass
        settings = make_settings(
            {"mqtt": {"client_id": f"auth-{uuid.uuid4().hex[:6]}"}},
            mqtt_url=broker_url(broker, "homealert", BROKER_PASSWORD),
        )
        assert settings.mqtt.password == BROKER_PASSWORD
        auth = {"username": "probe", "password": PROBE_PASSWORD}
        async with Probe(broker.port, settings.mqtt.base_topic, **auth) as probe:
            await exercise(settings, start_service, probe)
        retained = await everything_retained(broker.port, **auth)
    assert f"{settings.mqtt.base_topic}/status" in retained
    assert_no_secret(retained, BROKER_PASSWORD, PROBE_PASSWORD)
    assert_no_secret([r.getMessage() for r in caplog.records], BROKER_PASSWORD)


async def test_wrong_broker_password_is_retried_and_not_logged(
    tmp_path: Path, make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running(MosquittoServer(tmp_path / "mosquitto", users={"u": "right"})) as broker:
        settings = make_settings(mqtt_url=broker_url(broker, "u", BROKER_PASSWORD))
        service = build_service(settings)
        task = asyncio.create_task(service.run())
        try:
            await eventually(
                lambda: any("unavailable" in r.getMessage() for r in caplog.records),
                what="a refused connection reported",
            )
            assert not task.done()  # retrying, not crashed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert_no_secret([r.getMessage() for r in caplog.records], BROKER_PASSWORD)


async def test_tls_broker_and_tls_redis_with_passwords(
    tmp_path: Path, certs: Certs, make_settings, start_service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    users = {"homealert": BROKER_PASSWORD, "probe": PROBE_PASSWORD}
    broker = MosquittoServer(tmp_path / "mosquitto", users=users, tls=certs)
    redis = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD, tls=certs)
    with running(broker), running(redis):
        assert broker.url.startswith("mqtts://")
        assert redis.url.startswith("rediss://")
        settings = make_settings(
            {
                "mqtt": {"tls": {"ca_certs": str(certs.ca)}},
                "redis": {"tls": {"ca_certs": str(certs.ca)}},
            },
            mqtt_url=broker_url(broker, "homealert", BROKER_PASSWORD),
            redis_url=redis.url,
        )
        auth = {"username": "probe", "password": PROBE_PASSWORD, "tls_context": client_tls(certs)}
        async with Probe(broker.port, settings.mqtt.base_topic, **auth) as probe:
            alert_id, _ = await exercise(settings, start_service, probe)
        async with store_for(settings) as store:
            alert = await store.get_alert(alert_id)
        assert alert is not None
        assert alert.acknowledged_by == "anna"
        retained = await everything_retained(broker.port, **auth)
        # A client that does not trust the CA is refused.
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                "127.0.0.1", broker.port, tls_context=ssl.create_default_context(), timeout=5
            ):
                pass
    assert f"{settings.mqtt.base_topic}/alert/{alert_id}" in retained
    assert_no_secret(retained, BROKER_PASSWORD, REDIS_PASSWORD, PROBE_PASSWORD)
    assert_no_secret([r.getMessage() for r in caplog.records], BROKER_PASSWORD, REDIS_PASSWORD)


async def test_redis_password(
    tmp_path: Path, make_settings, start_service, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running(RedisServer(tmp_path / "redis", password=REDIS_PASSWORD)) as redis:
        settings = make_settings(redis_url=redis.url)
        assert REDIS_PASSWORD not in repr(settings)
        await exercise(settings, start_service, probe)
        wrong = make_settings(redis_url=redis.url.replace("r3dis", "wrong"))
        async with store_for(wrong) as store:
            with pytest.raises(Exception, match=r"(?i)auth|password|WRONGPASS"):
                await store.redis.ping()
    assert_no_secret([r.getMessage() for r in caplog.records], REDIS_PASSWORD)
