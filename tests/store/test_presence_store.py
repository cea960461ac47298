"""presence.lua on a real Redis: deadlines claimed once, given back after a lease, and
an online that arrives while a raise is in flight resolved only after it."""

from __future__ import annotations

from homealert_mqtt.store.presence_store import Details, Event, Kind, PresenceStore
from tests.store.conftest import StoreKit

LEASE = 90_000
NAS = Details("nas", "nas", "high", "zigbee2mqtt/nas/availability")


def _presence(kit: StoreKit) -> PresenceStore:
    return PresenceStore(kit.store, kit.clock)


async def test_offline_past_for_is_claimed_once(kit: StoreKit) -> None:
    presence = _presence(kit)
    await presence.observe(Kind.DEVICE, Event.OFFLINE, 60_000, NAS)
    kit.clock.advance(59)
    assert await presence.claim(LEASE) == []
    kit.clock.advance(2)
    [claim] = await presence.claim(LEASE)
    assert (claim.action, claim.details) == ("raise", NAS)
    assert await presence.claim(LEASE) == []  # a second replica: nothing
    assert await presence.done(claim)
    kit.clock.advance(3600)
    assert await presence.claim(LEASE) == []  # raised once, not again


async def test_a_repeated_offline_keeps_the_first_deadline(kit: StoreKit) -> None:
    presence = _presence(kit)
    await presence.observe(Kind.DEVICE, Event.OFFLINE, 60_000, NAS)
    kit.clock.advance(50)
    assert not await presence.observe(Kind.DEVICE, Event.OFFLINE, 60_000, NAS)  # a replay
    kit.clock.advance(11)
    assert len(await presence.claim(LEASE)) == 1


async def test_a_claim_whose_replica_died_comes_back_after_the_lease(kit: StoreKit) -> None:
    presence = _presence(kit)
    await presence.observe(Kind.DEVICE, Event.OFFLINE, 0, NAS)
    [first] = await presence.claim(LEASE)
    kit.clock.advance(89)
    assert await presence.claim(LEASE) == []
    kit.clock.advance(2)
    [again] = await presence.claim(LEASE)
    assert again.action == "raise"
    assert again.gen > first.gen
    assert not await presence.done(first)  # the old claim is no longer anyone's
    assert await presence.done(again)


async def test_online_during_a_raise_in_flight_resolves_after_it(kit: StoreKit) -> None:
    presence = _presence(kit)
    await presence.observe(Kind.DEVICE, Event.OFFLINE, 0, NAS)
    [raising] = await presence.claim(LEASE)
    await presence.observe(Kind.DEVICE, Event.ONLINE, 0, NAS)
    assert await presence.claim(LEASE) == []  # not before the raise is done
    await presence.done(raising)
    [resolving] = await presence.claim(LEASE)
    assert resolving.action == "resolve"
    await presence.done(resolving)
    assert await presence.claim(LEASE) == []
    assert [e.raised for e in await presence.entries()] == [False]


async def test_a_device_with_an_open_alert_is_not_forgotten(kit: StoreKit) -> None:
    presence = _presence(kit)
    await presence.observe(Kind.DEVICE, Event.OFFLINE, 0, NAS)
    [claim] = await presence.claim(LEASE)
    await presence.done(claim)
    assert not await presence.forget(Kind.DEVICE, "nas")
    await presence.observe(Kind.DEVICE, Event.ONLINE, 0, NAS)
    [claim] = await presence.claim(LEASE)
    await presence.done(claim)
    assert await presence.forget(Kind.DEVICE, "nas")
    assert await presence.entries() == []
