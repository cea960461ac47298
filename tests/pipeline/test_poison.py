"""Payloads that parse as JSON but would break a later step (Redis's UTF-8 encoding, the
published JSON, ISO dates) are rejected up front, not replayed into a crash."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from homealert_mqtt.escalation.plan import Start
from homealert_mqtt.models import Priority
from tests.probe import Probe

POISON = [
    ("lone surrogate in message", b'{"source": "a", "type": "x", "message": "\\ud800"}'),
    ("lone surrogate in severity", b'{"source": "a", "type": "x", "severity": "\\udfff"}'),
    ("lone surrogate in dedup_key", b'{"source": "a", "type": "x", "dedup_key": "\\ud800"}'),
    ("lone surrogate in a key", b'{"source": "a", "type": "x", "attributes": {"\\udc00": 1}}'),
    ("NaN", b'{"source": "a", "type": "x", "attributes": {"v": NaN}}'),
    ("huge number", b'{"source": "a", "type": "x", "attributes": {"v": -1e400}}'),
    ("year 10000 in UTC", b'{"source": "a", "type": "x", "timestamp": "9999-12-31T23:59-23:00"}'),
]


@pytest.mark.parametrize(("name", "payload"), POISON, ids=[p[0] for p in POISON])
async def test_poison_is_rejected_and_the_pipeline_goes_on(
    make_settings,
    start_service,
    probe: Probe,
    caplog: pytest.LogCaptureFixture,
    name: str,
    payload: bytes,
) -> None:
    await start_service(make_settings())
    await probe.publish(f"{probe.base}/in", payload)
    await probe.alert(source="ok", type="after_poison")
    error = await probe.wait_for(f"{probe.base}/error")
    assert error.json()["topic"] == f"{probe.base}/in"
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    assert created.json()["source"] == "ok"
    crashed = [r for r in caplog.records if r.levelno >= logging.ERROR and "homealert" in r.name]
    assert crashed == []


async def test_an_alert_the_store_fails_on_is_reported_and_the_pipeline_goes_on(
    make_settings, start_service, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    """A script error that is not Redis refusing writes (a bug: this input passed
    validation) would fail the same way on every retry. It is answered on <base>/error
    and logged, and the alerts behind it are stored."""
    running = await start_service(make_settings())
    # Fault injection: a P1 alert's first escalation step that ingest.lua cannot add up.
    running.service.ingest.start_plan = {Priority.P1: Start(quiet=True, next_delay_ms="soon")}  # type: ignore[arg-type]
    await probe.alert(source="bug", type="x", priority="P1")
    await probe.alert(source="ok", type="after_failure", priority="P3")
    error = await probe.wait_for(f"{probe.base}/error")
    assert error.json()["error"].startswith("internal error, the alert was not stored")
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    assert created.json()["source"] == "ok"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "ingest.lua" in r.message]
    assert len(logged) == 1


async def test_a_command_the_store_fails_on_is_reported_and_the_pipeline_goes_on(
    make_settings, start_service, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_service(make_settings())
    store = running.service.store
    command = store.command

    async def broken(action: str, *args: Any) -> Any:
        if action == "resolve":  # fault injection: a script with a bug, run by Redis
            await store.redis.eval("return redis.call('GET', KEYS[1]) + 1", 1, "none")
        return await command(action, *args)

    store.command = broken  # type: ignore[method-assign]
    await probe.alert(source="cmd", type="x")
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    alert_id = created.json()["id"]
    await probe.publish(f"{probe.base}/alert/{alert_id}/resolve", b"")
    await probe.publish(f"{probe.base}/alert/{alert_id}/ack", b"me")
    error = await probe.wait_for(f"{probe.base}/error")
    assert error.json()["error"].startswith("internal error, the command was not carried out")
    acked = await probe.wait_for(
        f"{probe.base}/alert/{alert_id}", lambda s: s.json()["state"] == "acknowledged"
    )
    assert acked.json()["acknowledged_by"] == "me"
    logged = [
        r for r in caplog.records if r.levelno >= logging.ERROR and "script failed" in r.message
    ]
    assert len(logged) == 1
