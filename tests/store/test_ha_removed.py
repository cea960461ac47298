"""Alert ids whose Home Assistant entities may outlive them: kept a while, bounded."""

from __future__ import annotations

from homealert_mqtt.store.ha_removed import RemovedEntities
from tests.conftest import FakeClock
from tests.store.conftest import StoreKit


def _memory(kit: StoreKit, **bounds: int) -> RemovedEntities:
    return RemovedEntities(kit.redis, kit.keys, kit.clock, **bounds)


async def test_remember_recall_forget(kit: StoreKit) -> None:
    memory = _memory(kit)
    assert await memory.recall() == []
    await memory.remember(["a-1"])
    kit.clock.advance(1)
    await memory.remember(["b-2", "c-3"])
    assert await memory.recall() == ["a-1", "b-2", "c-3"]  # oldest first
    await memory.forget(["a-1", "c-3"])
    assert await memory.recall() == ["b-2"]


async def test_kept_for_a_while(kit: StoreKit, clock: FakeClock) -> None:
    memory = _memory(kit, keep_ms=60_000)
    await memory.remember(["old"])
    clock.advance(59)
    await memory.remember(["young"])
    clock.advance(2)
    assert await memory.recall() == ["young"]
    # ... and the old entry leaves Redis with the next one added
    await memory.remember(["next"])
    assert await kit.redis.zcard(kit.keys.ha_removed) == 2


async def test_bounded_in_number(kit: StoreKit, clock: FakeClock) -> None:
    memory = _memory(kit, keep_max=3)
    for n in range(5):
        clock.advance(1)
        await memory.remember([f"a-{n}"])
    assert await memory.recall() == ["a-2", "a-3", "a-4"]
