"""The scripts answer with one JSON document. What ingest.lua hands back must be what Redis
holds (a new alert's reply is the fields it wrote, not a read-back), any text must cross
the JSON boundary unchanged, and cjson's `{}` for an empty list must read as empty."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from redis.exceptions import RedisError, ResponseError

from homealert_mqtt.store.alert_store import INGEST_CHUNK, IngestRequest, IngestResult, _ingest_arg
from homealert_mqtt.store.scripts import as_str, is_script_bug
from tests.requests import bare_request
from tests.store.conftest import StoreKit


async def ingest_raw(kit: StoreKit, request: IngestRequest) -> dict[str, Any]:
    """ingest.lua's reply as it comes, not yet turned into records (the alert's flat list
    of fields and values as a dict)."""
    reply = await kit.store.scripts.ingest(
        keys=[kit.keys.prefix],
        args=[kit.clock(), kit.store.lua_settings, f"[{_ingest_arg(request)}]"],
    )
    decoded: dict[str, Any]
    (decoded,) = json.loads(reply)
    if alert := decoded["alert"]:
        assert len(alert) % 2 == 0
        decoded["alert"] = dict(zip(alert[::2], alert[1::2], strict=True))
        assert len(decoded["alert"]) == len(alert) // 2  # no field twice
    return decoded


async def stored_hash(kit: StoreKit, alert_id: str) -> dict[str, str]:
    raw = await kit.redis.hgetall(kit.keys.alert(alert_id))
    return {as_str(k): as_str(v) for k, v in raw.items()}


async def stored_group(kit: StoreKit, group_id: str) -> Any:
    return json.loads(await kit.store.scripts.group_state(keys=[kit.keys.prefix], args=[group_id]))


async def assert_reply_is_stored(kit: StoreKit, reply: dict[str, Any]) -> None:
    alert = reply["alert"]
    assert alert == await stored_hash(kit, alert["id"])
    if alert["group_id"]:
        assert reply["group"] == await stored_group(kit, alert["group_id"])
    else:
        assert reply["group"] is False


@pytest.mark.parametrize(
    ("quiet", "delay"), [(False, None), (True, 600_000), (True, None)], ids=["T0", "T1", "T1-last"]
)
@pytest.mark.parametrize("grouped", [False, True])
async def test_every_outcome_answers_what_is_stored(
    kit: StoreKit, quiet: bool, delay: int | None, grouped: bool
) -> None:
    def request(**fields: Any) -> IngestRequest:
        req = kit.request(**{"type": "reply", "severity": "high", **fields})
        if not grouped:
            req = dataclasses.replace(req, group_key_hash="", group_key_text="", base_group_id="")
        return dataclasses.replace(req, quiet_start=quiet, next_delay_ms=delay)

    created = await ingest_raw(kit, request())
    assert (created["outcome"], created["events"]) == ("created", ["created"])
    await assert_reply_is_stored(kit, created)
    assert created["alert"]["timestamp"] == ""
    kit.clock.advance(1)
    repeat = await ingest_raw(kit, request(priority="P1"))  # a raised priority too
    assert (repeat["outcome"], repeat["alert"]["priority"]) == ("deduplicated", "P1")
    assert int(repeat["alert"]["rev"]) > int(created["alert"]["rev"])
    await assert_reply_is_stored(kit, repeat)
    kit.clock.advance(1)
    resolved = await ingest_raw(kit, request(status="resolved"))
    assert resolved["outcome"] == "resolved"
    await assert_reply_is_stored(kit, resolved)
    kit.clock.advance(1)
    reopened = await ingest_raw(kit, request())
    assert reopened["outcome"] == "reopened"
    await assert_reply_is_stored(kit, reopened)
    kit.clock.advance(kit.settings.alerts.dedup.window + 1)
    await ingest_raw(kit, request(status="resolved"))
    kit.clock.advance(kit.settings.alerts.dedup.window + 1)
    second = await ingest_raw(kit, request(timestamp="2027-01-15T08:00:00.250Z"))
    assert second["outcome"] == "created"
    assert second["alert"]["timestamp"] == "1800000000250"
    await assert_reply_is_stored(kit, second)
    if grouped:  # the first group's window is over: a group of its own
        assert second["group"]["id"] == created["group"]["id"] + "-2"
        assert second["group"]["members"] == [second["alert"]["id"]]
    joined = await ingest_raw(kit, request(severity="critical"))  # a new fingerprint
    assert joined["outcome"] == "created"
    await assert_reply_is_stored(kit, joined)
    if grouped:
        assert joined["events"] == ["created", "grouped"]
        members = {second["alert"]["id"], joined["alert"]["id"]}  # same score: any order
        assert set(joined["group"]["members"]) == members


async def test_the_records_equal_the_stored_state(kit: StoreKit) -> None:
    first = await kit.ingest(type="records", severity="high")
    assert first.alert == await kit.store.get_alert(first.alert.id)
    assert first.group == await kit.store.get_group(first.group.id)
    assert first.group.alert_ids == (first.alert.id,)
    second = await kit.ingest(type="records", severity="critical")  # a new fingerprint
    assert second.events == ("created", "grouped")
    assert second.alert == await kit.store.get_alert(second.alert.id)
    assert second.group == await kit.store.get_group(first.group.id)


TEXT = 'é ü 日本 🔥 "quoted" back\\slash a/b tab\t new\nline nul\x00 bell\x07 del\x7f \u2028'


async def test_text_crosses_the_json_boundary_unchanged(kit: StoreKit) -> None:
    attributes = {"k": TEXT, TEXT: [1, 2.5, None, True], "n": 2**53 - 1}
    request = bare_request(
        "text",
        source=f"src {TEXT}",
        type=f"type {TEXT}",
        message=TEXT,
        attributes_json=json.dumps(attributes, ensure_ascii=False),
        group_key_hash="0123456789abcdef",
        group_key_text=f"key {TEXT}",
        base_group_id="g-text",
        timestamp_ms=253402300799999,  # 9999-12-31T23:59:59.999Z, the latest valid
    )
    (result,) = await kit.store.ingest_many([request])
    alert = result.alert
    assert alert is not None
    assert (alert.source, alert.type, alert.message) == (f"src {TEXT}", f"type {TEXT}", TEXT)
    assert alert.attributes == attributes
    assert alert.timestamp == 253402300799999
    assert result.group is not None
    assert result.group.key == f"key {TEXT}"
    raw = await kit.redis.hget(kit.keys.alert(alert.id), "message")
    assert raw == TEXT.encode()
    assert await kit.store.get_alert(alert.id) == alert


async def test_empty_lists_read_as_empty(kit: StoreKit) -> None:
    """cjson encodes an empty Lua table as `{}`, never `[]`."""
    nothing = await kit.ingest(type="never-fired", status="resolved")
    assert (nothing.outcome, nothing.alert, nothing.group, nothing.events) == (
        "no_open_alert",
        None,
        None,
        (),
    )
    once = bare_request("redelivered", client_id="c.1", mid=7, digest="d" * 24)
    (first,) = await kit.store.ingest_many([once])
    (again,) = await kit.store.ingest_many([dataclasses.replace(once, dup=True)])
    assert (again.outcome, again.events) == ("redelivered", ())
    assert again.alert == dataclasses.replace(first.alert, rev=again.alert.rev)  # as it is
    grouped = await kit.ingest(type="lonely")
    await kit.redis.zrem(kit.keys.group_members(grouped.group.id), grouped.alert.id)
    empty = await kit.store.get_group(grouped.group.id)
    assert empty is not None
    assert (empty.alert_ids, empty.highest_priority, empty.state) == ((), None, "resolved")
    expired = await kit.store.expire_due()
    assert (expired.expired, expired.changed_groups, expired.removed_groups) == ((), (), ())


async def test_a_batch_over_several_calls_keeps_its_order(kit: StoreKit) -> None:
    """ingest_many splits a batch into INGEST_CHUNK alerts per script call: one
    fingerprint repeated across the calls is counted in order, and a resolve after the
    last repeat finds the alert open."""
    size = 2 * INGEST_CHUNK + 5
    requests = [
        kit.request(type="chunked", message=f"#{i}") if i % 3 == 0 else kit.request(type=f"d{i}")
        for i in range(size)
    ]
    requests.append(kit.request(type="chunked", status="resolved"))
    results = await kit.store.ingest_many(requests)
    assert len(results) == len(requests)
    repeats = [r for i, r in enumerate(results[:-1]) if i % 3 == 0]
    assert [r.outcome for r in repeats] == ["created"] + ["deduplicated"] * (len(repeats) - 1)
    assert [r.alert.count for r in repeats if r.alert] == list(range(1, len(repeats) + 1))
    assert repeats[-1].alert is not None
    assert repeats[-1].alert.message == f"#{3 * (len(repeats) - 1)}"
    assert results[-1].outcome == "resolved"
    others = [r.outcome for i, r in enumerate(results[:-1]) if i % 3 != 0]
    assert others == ["created"] * len(others)


async def test_a_flushed_script_cache_is_reloaded_and_the_batch_runs_once(
    kit: StoreKit,
) -> None:
    await kit.redis.script_flush()
    requests = [kit.request(type=f"flushed{i}") for i in range(INGEST_CHUNK + 1)]
    results = await kit.store.ingest_many(requests)
    assert [r.outcome for r in results] == ["created"] * len(requests)
    assert all(r.alert is not None and r.alert.count == 1 for r in results)


async def test_a_reader_that_stops_early_leaves_no_answers_behind(kit: StoreKit) -> None:
    requests = [kit.request(type=f"early{i}") for i in range(2 * INGEST_CHUNK)]
    async with kit.store.ingest_stream() as stream:
        await stream.send(requests[:INGEST_CHUNK], None)
        await stream.send(requests[INGEST_CHUNK:], None)
        _tag, first = await stream.receive()  # the second chunk's answer is never read
    assert len(first) == INGEST_CHUNK
    # The next calls on the pool get their own answers, not the one left unread.
    assert await kit.redis.ping()
    again = await kit.store.ingest_many([kit.request(type="early0")])
    assert [r.outcome for r in again] == ["deduplicated"]
    later = await kit.store.ingest_many([kit.request(type=f"early{INGEST_CHUNK}")])
    assert [r.outcome for r in later] == ["deduplicated"]  # it did run, in Redis


async def test_a_stream_answers_in_the_order_sent_while_more_is_sent(kit: StoreKit) -> None:
    """The pipeline sends a chunk while earlier ones are still being answered."""
    chunks = [[kit.request(type=f"stream{c}-{i}") for i in range(3)] for c in range(4)]
    answers: list[tuple[int, list[IngestResult]]] = []
    async with kit.store.ingest_stream() as stream:
        for tag in (0, 1):
            await stream.send(chunks[tag], tag)
        answers.append(await stream.receive())
        await stream.send(chunks[2], 2)
        await stream.send(chunks[0], 3)  # the same alerts again: counted once more each
        assert stream.pending == 3
        while stream.pending:
            answers.append(await stream.receive())
    answered = [[r.outcome for r in results] for _tag, results in answers]
    assert [tag for tag, _results in answers] == [0, 1, 2, 3]
    assert answered == [["created"] * 3] * 3 + [["deduplicated"] * 3]


async def test_an_alert_the_script_fails_on_does_not_take_its_chunk_down(kit: StoreKit) -> None:
    """A script error for one alert (a bug: input that passed validation) answers that
    alert as failed; the alerts before and after it in the same call are stored."""
    await kit.store.ingest_many([kit.request(type="broken")])
    # A priority the script does not rank: comparing it on a repeat raises in Lua.
    bad = dataclasses.replace(kit.request(type="broken"), priority="P9")
    results = await kit.store.ingest_many(
        [kit.request(type="before"), bad, kit.request(type="after")]
    )
    assert [r.outcome for r in results] == ["created", "failed", "created"]
    assert "compare" in results[1].reason
    assert (results[1].alert, results[1].group, results[1].events) == (None, None, ())


async def test_redis_refusing_writes_fails_the_whole_call(kit: StoreKit) -> None:
    """Out of memory is not the alert's fault: the call fails (the service retries it),
    and the alert is not answered as failed and dropped."""
    await kit.redis.config_set("maxmemory", 1)
    try:
        with pytest.raises(ResponseError, match="OOM"):
            await kit.store.ingest_many([kit.request(type="oom")])
    finally:
        await kit.redis.config_set("maxmemory", 0)
    (result,) = await kit.store.ingest_many([kit.request(type="oom")])
    assert result.outcome == "created"


async def test_a_script_bug_is_told_from_redis_refusing_writes(kit: StoreKit) -> None:
    """What is_script_bug sees from this Redis: a Lua error in the script, and a write
    refused inside it."""
    script = kit.redis.register_script("return redis.call('HSET', KEYS[1], 'f', ARGV[1] + 1)")
    with pytest.raises(RedisError) as bug:
        await script(keys=[f"{kit.keys.prefix}bug"], args=["not a number"])
    assert is_script_bug(bug.value)
    await kit.redis.config_set("maxmemory", 1)
    try:
        with pytest.raises(RedisError) as refused:
            await script(keys=[f"{kit.keys.prefix}bug"], args=["1"])
    finally:
        await kit.redis.config_set("maxmemory", 0)
    assert "maxmemory" in str(refused.value)
    assert not is_script_bug(refused.value)
    assert not is_script_bug(ConnectionError("gone"))  # type: ignore[arg-type]
