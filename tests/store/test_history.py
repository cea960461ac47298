"""Per-source history: bounded by size (approximately: Redis trims whole stream nodes,
`MAXLEN ~`) and by age, on the service's clock; readable per source and for all."""

from __future__ import annotations

from typing import Any

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


async def test_clock_going_back_does_not_break_ingest(kit: StoreKit) -> None:
    await kit.ingest(source="tz", type="a")
    kit.clock.advance(-60)
    assert (await kit.ingest(source="tz", type="b")).outcome == "created"
    assert [e.type for e in await kit.store.history("tz")] == ["a", "b"]  # same `at` order


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
