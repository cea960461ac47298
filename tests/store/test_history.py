"""Per-source history: bounded by size (approximately: Redis trims whole stream nodes,
`MAXLEN ~`) and by age, on the service's clock; readable per source and for all."""

from __future__ import annotations

from typing import Any

from homealert_mqtt.store.scripts import as_str
from tests.store.conftest import StoreKit

NODE = 100  # Redis's stream-node-max-entries: `~` trims whole nodes of this many entries


async def fill(kit: StoreKit, source: str, n: int, prefix: str = "t") -> None:
    requests = [kit.request(source=source, type=f"{prefix}{i}") for i in range(n)]
    for start in range(0, n, 200):
        await kit.store.ingest_many(requests[start : start + 200])


async def test_bounded_by_max_entries(kit_factory: Any) -> None:
    async with kit_factory({"alerts": {"history": {"max_entries": 50}}}) as kit:
        await fill(kit, "busy", 1000)
        length = await kit.redis.xlen(kit.keys.history("busy"))
        assert 50 <= length <= 50 + NODE
        newest = await kit.store.history("busy", limit=5)
        assert [e.type for e in newest] == ["t999", "t998", "t997", "t996", "t995"]


async def test_bounded_by_age_on_the_service_clock(kit_factory: Any) -> None:
    async with kit_factory({"alerts": {"history": {"max_age": 3600}}}) as kit:
        await fill(kit, "old", 3 * NODE + 10, "old")
        kit.clock.advance(1800)
        await fill(kit, "old", 20, "mid")
        assert await kit.redis.xlen(kit.keys.history("old")) == 3 * NODE + 30  # none too old
        kit.clock.advance(1801)  # the first ones are now older than max_age
        await fill(kit, "old", 1, "new")
        entries = await kit.store.history("old", limit=10_000)
        old = [e for e in entries if e.type.startswith("old")]
        assert len(old) < NODE  # all but the last partial node are gone
        assert {e.type for e in entries} >= {f"mid{i}" for i in range(20)} | {"new0"}
        recent = [e for e in entries if not e.type.startswith("old")]
        assert all(e.at >= kit.clock() - 3600 * 1000 for e in recent)


async def stream_ids(kit: StoreKit, source: str) -> list[str]:
    return [as_str(i) for i, _ in await kit.redis.xrange(kit.keys.history(source))]


async def last_id(kit: StoreKit, source: str) -> str | None:
    raw = await kit.redis.hget(kit.keys.history_last, source)
    return None if raw is None else as_str(raw)


async def test_clock_going_back_does_not_break_ingest(kit: StoreKit) -> None:
    await kit.ingest(source="tz", type="a")
    kit.clock.advance(-60)
    assert (await kit.ingest(source="tz", type="b")).outcome == "created"
    assert [e.type for e in await kit.store.history("tz")] == ["a", "b"]  # same `at` order


async def test_ids_follow_the_service_clock_and_always_increase(kit: StoreKit) -> None:
    start = kit.clock()
    await kit.store.ingest_many([kit.request(source="ids", type=f"a{i}") for i in range(3)])
    kit.clock.advance(-60)  # went back: the last millisecond is reused
    await kit.ingest(source="ids", type="b")
    kit.clock.advance(61)  # past the last entry again: its own millisecond
    await kit.ingest(source="ids", type="c")
    ids = await stream_ids(kit, "ids")
    assert ids == [f"{start}-0", f"{start}-1", f"{start}-2", f"{start}-3", f"{kit.clock()}-0"]
    assert await last_id(kit, "ids") == ids[-1]  # the hash follows the stream
    assert [e.at for e in await kit.store.history("ids", limit=2)] == [kit.clock(), start - 60_000]


async def test_a_stream_ahead_of_the_last_ids_is_appended_to(kit: StoreKit) -> None:
    """An older version of the service (a replica mid-upgrade) writes entries and leaves
    the hash of last ids behind: the next entry still goes after them."""
    await kit.ingest(source="mixed", type="a")
    ahead = f"{kit.clock() + 5}-7"
    fields = {"id": "x", "event": "created", "type": "x", "priority": "P5", "at": "0"}
    await kit.redis.xadd(kit.keys.history("mixed"), fields, id=ahead)
    kit.clock.advance(0.001)  # still before the entry the other replica wrote
    assert (await kit.ingest(source="mixed", type="b")).outcome == "created"
    ids = await stream_ids(kit, "mixed")
    assert ids[-2:] == [ahead, f"{kit.clock() + 4}-8"]
    assert await last_id(kit, "mixed") == ids[-1]


async def test_a_stream_from_before_the_last_ids_is_appended_to(kit: StoreKit) -> None:
    """History written before the hash of last ids existed (nor, here, the sources set)."""
    fields = {"id": "x", "event": "created", "type": "x", "priority": "P5", "at": "0"}
    old = f"{kit.clock()}-4"
    await kit.redis.xadd(kit.keys.history("legacy"), fields, id=old)
    assert await kit.store.history(None) == []  # not listed yet
    await kit.ingest(source="legacy", type="a")
    assert await stream_ids(kit, "legacy") == [old, f"{kit.clock()}-5"]
    assert {e.source for e in await kit.store.history(None)} == {"legacy"}


async def test_trimmed_by_age_as_if_after_every_entry(kit_factory: Any) -> None:
    """The age limit is applied once per new millisecond of a stream, not after every
    entry, and leaves nothing that a trim after every entry would have removed."""
    async with kit_factory({"alerts": {"history": {"max_age": 60}}}) as kit:
        key = kit.keys.history("same")

        async def left_to_trim() -> int:
            return int(await kit.redis.xtrim(key, minid=kit.clock() - 60_000, approximate=True))

        await fill(kit, "same", 3 * NODE, "old")  # all in one millisecond
        kit.clock.advance(30)
        await fill(kit, "same", NODE, "mid")
        assert await left_to_trim() == 0
        kit.clock.advance(31)  # the old ones are now older than max_age
        await fill(kit, "same", 2 * NODE, "new")
        assert await left_to_trim() == 0
        entries = await kit.store.history("same", limit=10_000)
        assert len([e for e in entries if e.type.startswith("old")]) < NODE
        assert len([e for e in entries if not e.type.startswith("old")]) == 3 * NODE
        length = await kit.redis.xlen(key)
        kit.clock.advance(-120)  # back: the last millisecond is reused, nothing is trimmed
        await fill(kit, "same", 5, "back")
        assert await kit.redis.xlen(key) == length + 5


async def test_read_per_source_and_for_all(kit: StoreKit) -> None:
    created = await kit.ingest(source="door", type="open")
    kit.clock.advance(1)
    await kit.ingest(source="nas", type="disk", severity="critical")
    kit.clock.advance(1)
    await kit.ingest(source="door", type="open")  # deduplicated
    kit.clock.advance(1)
    await kit.store.command("ack", created.alert.id, "anna", None)
    kit.clock.advance(1)
    await kit.ingest(source="door", type="open", status="resolved")

    door = await kit.store.history("door")
    assert [e.event for e in door] == ["resolved", "acknowledged", "deduplicated", "created"]
    assert {e.id for e in door} == {created.alert.id}
    assert [e.at for e in door] == sorted((e.at for e in door), reverse=True)
    everything = await kit.store.history(None)
    assert [(e.source, e.event) for e in everything] == [
        ("door", "resolved"),
        ("door", "acknowledged"),
        ("door", "deduplicated"),
        ("nas", "created"),
        ("door", "created"),
    ]
    assert everything[3].priority == "P1"
    assert [e.event for e in await kit.store.history(None, limit=2)] == ["resolved", "acknowledged"]
    assert await kit.store.history("nobody") == []
