"""sms_code.lua and sms_reply.lua on a real Redis: codes unique among open alerts, and
each reply claimed by one caller, once."""

from __future__ import annotations

import json

from homealert_mqtt.store.reply_codes import CODE_CHARS, ReplyCodes, new_code
from homealert_mqtt.store.scripts import as_str
from tests.store.conftest import StoreKit


async def _assign(kit: StoreKit, ids: list[str], candidates: list[str]) -> list[str]:
    raw = await kit.store.scripts.sms_code(
        keys=[kit.keys.prefix], args=["assign", json.dumps(ids), json.dumps(candidates)]
    )
    return [str(c) for c in json.loads(as_str(raw))]


async def test_a_code_is_unique_among_open_alerts_and_reused_once_closed(kit: StoreKit) -> None:
    first = (await kit.ingest(type="leak")).alert.id
    second = (await kit.ingest(type="smoke")).alert.id

    assert await _assign(kit, [first], ["AAAA"]) == ["AAAA"]
    assert await _assign(kit, [first], ["CCCC"]) == ["AAAA"]  # an alert keeps its code
    assert await _assign(kit, [second], ["AAAA", "BBBB"]) == ["BBBB"]  # AAAA is taken

    await kit.store.command("resolve", first, None, None)
    third = (await kit.ingest(type="fire")).alert.id
    assert await _assign(kit, [third, first], ["AAAA"]) == ["AAAA", ""]  # closed: no code
    codes = ReplyCodes(kit.store, kit.clock)
    assert await codes.alert_for("aaaa") == third


async def test_every_candidate_taken_means_no_code(kit: StoreKit) -> None:
    one = (await kit.ingest(type="a")).alert.id
    two = (await kit.ingest(type="b")).alert.id
    assert await _assign(kit, [one], ["ZZZZ"]) == ["ZZZZ"]
    assert await _assign(kit, [two], ["ZZZZ"]) == [""]


async def test_a_reply_is_claimed_once_and_stays_done(kit: StoreKit) -> None:
    codes = ReplyCodes(kit.store, kit.clock)
    assert await codes.claim_reply("SM1", 60_000)
    assert not await codes.claim_reply("SM1", 60_000)  # another replica, meanwhile
    await codes.reply_done("SM1")
    kit.clock.advance(3600)
    assert not await codes.claim_reply("SM1", 60_000)  # a restart: still done


async def test_a_claim_whose_replica_died_comes_back_after_its_lease(kit: StoreKit) -> None:
    codes = ReplyCodes(kit.store, kit.clock)
    assert await codes.claim_reply("SM2", 100)
    await kit.redis.delete(kit.keys.sms_claim("SM2"))  # the lease ran out
    assert await codes.claim_reply("SM2", 100)


async def test_last_paged(kit: StoreKit) -> None:
    codes = ReplyCodes(kit.store, kit.clock)
    assert await codes.last_paged("+15550000001") is None
    await codes.paged("+15550000001", ["a", "b"])
    assert await codes.last_paged("+15550000001") == ["a", "b"]


def test_new_codes() -> None:
    for _ in range(100):
        code = new_code()
        assert len(code) == 4
        assert set(code) <= set(CODE_CHARS)
