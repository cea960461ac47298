"""Payloads that parse as JSON but would break a later step (Redis's UTF-8 encoding, the
published JSON, ISO dates) are rejected up front, not replayed into a crash."""

from __future__ import annotations

import logging

import pytest

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
