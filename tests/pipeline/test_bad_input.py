"""Bad input is answered on <base>/error and never blocks the valid alert behind it."""

from __future__ import annotations

import json

import pytest

from tests.probe import Probe

GOOD = {"source": "ok", "type": "after_bad", "severity": "high"}

BAD_INPUTS = [
    ("not json", b"{nope", "not JSON"),
    ("array", b"[1, 2]", "JSON object"),
    ("string", b'"hello"', "JSON object"),
    ("missing type", json.dumps({"source": "a"}).encode(), "type is required"),
    ("missing source", json.dumps({"type": "a"}).encode(), "source is required"),
    ("empty type", json.dumps({"source": "a", "type": ""}).encode(), "type must be"),
    ("type not string", json.dumps({"source": "a", "type": 5}).encode(), "type must be a string"),
    ("bad chars", json.dumps({"source": "a/b c", "type": "x"}).encode(), "source must be"),
    ("long source", json.dumps({"source": "a" * 65, "type": "x"}).encode(), "source must be"),
    (
        "long message",
        json.dumps({"source": "a", "type": "x", "message": "m" * 1025}).encode(),
        "over the limit",
    ),
    (
        "message not string",
        json.dumps({"source": "a", "type": "x", "message": {"a": 1}}).encode(),
        "message must be a string",
    ),
    ("priority P9", json.dumps({"source": "a", "type": "x", "priority": "P9"}).encode(), "P1..P5"),
    ("bad status", json.dumps({"source": "a", "type": "x", "status": "maybe"}).encode(), "status"),
    (
        "attributes not object",
        json.dumps({"source": "a", "type": "x", "attributes": [1]}).encode(),
        "attributes must be an object",
    ),
    (
        "deep attributes",
        json.dumps(
            {
                "source": "a",
                "type": "x",
                "attributes": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
            }
        ).encode(),
        "nested deeper",
    ),
    (
        "big attributes",
        json.dumps({"source": "a", "type": "x", "attributes": {"blob": "x" * 9000}}).encode(),
        "8 KiB",
    ),
    (
        "bad timestamp",
        json.dumps({"source": "a", "type": "x", "timestamp": "yesterday"}).encode(),
        "ISO 8601",
    ),
    ("invalid utf-8", b'{"source": "a", "type": "\xff\xfe"}', "UTF-8"),
    (
        "1 MB",
        b'{"source": "a", "type": "x", "message": "' + b"m" * 1_000_000 + b'"}',
        "over the limit",
    ),
    ("deeply nested json", b"[" * 50_000 + b"]" * 50_000, "over the limit"),
    ("nested just under the size limit", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nested"),
]


@pytest.mark.parametrize(("name", "payload", "reason"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_is_rejected_and_the_next_alert_still_works(
    make_settings, start_service, probe: Probe, name: str, payload: bytes, reason: str
) -> None:
    await start_service(make_settings())
    await probe.publish(f"{probe.base}/in", payload)
    await probe.alert(**GOOD)
    error = await probe.wait_for(f"{probe.base}/error")
    body = error.json()
    assert reason in body["error"], body
    assert body["topic"] == f"{probe.base}/in"
    assert len(body["payload"].encode()) <= 256 * 3  # 256 bytes, replacement chars widen
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    assert created.json()["source"] == "ok"
    assert (await probe.wait_events("rejected", 1))[0]["error"] == body["error"]


async def test_topic_source_contradicting_payload_is_rejected(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    await probe.publish(f"{probe.base}/in/kitchen", {"source": "garage", "type": "smoke"})
    await probe.alert(**GOOD)
    error = await probe.wait_for(f"{probe.base}/error")
    assert "contradicts" in error.json()["error"]
    await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")


async def test_bad_topic_source_and_retained_alerts_are_rejected(
    make_settings, start_service, probe: Probe
) -> None:
    # Retained before the service subscribes: it arrives flagged as a retained replay.
    await probe.publish(f"{probe.base}/in/x", {"type": "x"}, retain=True)
    await start_service(make_settings())
    await probe.publish(f"{probe.base}/in/a b", {"type": "x"})
    await probe.alert(**GOOD)
    await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    reasons = [e["error"] for e in probe.errors()]
    assert any("topic source" in r for r in reasons)
    assert any("retained" in r for r in reasons)
    await probe.publish(f"{probe.base}/in/x", b"", retain=True)  # clean the broker


@pytest.mark.parametrize(
    ("topic_tail", "payload", "reason"),
    [
        ("alert/nosuchalert/ack", b"", "no alert"),
        ("alert/nosuchalert/resolve", b"bob", "no alert"),
        ("alert/UPPER/ack", b"", "no alert"),
        ("group/nosuchgroup/ack", b"", "no group"),
        ("alert/x/ack", b"{bad json", "not JSON"),
        ("alert/x/ack", b'{"by": 5}', "by must be a string"),
    ],
)
async def test_bad_commands_are_answered_on_error(
    make_settings, start_service, probe: Probe, topic_tail: str, payload: bytes, reason: str
) -> None:
    await start_service(make_settings())
    await probe.publish(f"{probe.base}/{topic_tail}", payload)
    error = await probe.wait_for(f"{probe.base}/error")
    assert reason in error.json()["error"]
