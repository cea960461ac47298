"""T1 and T2, the escalation engine's transitions, through the Lua scripts on a real Redis:
schedule.lua -> claim_flush.lua -> complete_flush.lua, with the table in models.py as the
oracle. Also what must never page: acknowledged, resolved, and an earlier epoch."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from homealert_mqtt.config import Settings
from homealert_mqtt.escalation.plan import next_step
from homealert_mqtt.models import TRANSITIONS, AlertRecord, State, next_state
from homealert_mqtt.redis_client import make_redis
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.store.escalation_store import EscalationStore, Flush, TimerMember
from homealert_mqtt.store.keys import Keys
from homealert_mqtt.store.scripts import as_str
from tests.conftest import FakeClock
from tests.requests import bare_request

DIGEST_MS = 60_000
LEASE_MS = 90_000
POLICY = [
    {"delay": 0, "channels": ["mqtt"], "groups": ["oncall"]},
    {"delay": 600, "channels": ["mqtt"], "groups": ["manager"]},
    {"delay": 1200, "channels": ["mqtt"], "groups": ["director"]},
]
_ids = itertools.count()


class Walker:
    """Drives the escalation scripts the way engine.py does, minus the sending."""

    def __init__(self, settings: Settings, clock: FakeClock) -> None:
        self.settings = settings
        self.clock = clock
        keys = Keys.for_prefix(settings.redis.key_prefix)
        self.alerts = AlertStore(make_redis(settings.redis), keys, settings.alerts, clock)
        self.store = EscalationStore(self.alerts, clock)
        self.keys = keys

    async def ingest(self, name: str, status: str = "firing") -> AlertRecord:
        request = bare_request(
            name, status=status, source="test", severity="critical", priority="P1"
        )
        [result] = await self.alerts.ingest_many([request])
        assert result.alert is not None, result
        return result.alert

    async def claim(self) -> list[Flush]:
        """What the engine would send now: due timers batched, then claimed."""
        await self.store.schedule_due(DIGEST_MS)
        return await self.store.claim_flushes(LEASE_MS)

    async def complete(self, flush: Flush) -> list[tuple[AlertRecord, str]]:
        now = self.clock()
        escalation = self.settings.alerts.escalation
        steps = [(m, next_step(escalation, a, m, now)) for m, a in flush.steps]
        return await self.store.complete_flush(flush, steps, DIGEST_MS)

    async def batch(self, member: TimerMember, alert: AlertRecord, due: int) -> Flush:
        """A batch of one as schedule.lua would leave it: the member pending in it."""
        flush = Flush(f"~{alert.id}|{member.level}.{member.round}", due, ((member, alert),))
        await self.alerts.redis.sadd(self.keys.pending(flush.key), str(member))
        return flush

    async def fire(self) -> list[tuple[AlertRecord, str]]:
        moved = []
        for flush in await self.claim():
            moved += await self.complete(flush)
        return moved

    async def alert(self, alert_id: str) -> AlertRecord:
        found = await self.alerts.get_alert(alert_id)
        assert found is not None
        return found

    async def timer(self, alert_id: str) -> str | None:
        value = await self.alerts.redis.hget(self.keys.alert(alert_id), "timer")
        return None if value is None else as_str(value)

    async def timers(self) -> list[str]:
        return [as_str(m) for m in await self.alerts.redis.zrange(self.keys.timers, 0, -1)]


@pytest.fixture
async def walker(make_settings: Callable[..., Settings], clock: FakeClock) -> AsyncIterator[Walker]:
    settings = make_settings(
        {"alerts": {"grouping": {"enabled": False}, "escalation": {"policies": {"p1": POLICY}}}}
    )
    walker = Walker(settings, clock)
    yield walker
    await walker.alerts.redis.aclose()


async def test_t1_level_0_makes_a_new_alert_active(walker: Walker, clock: FakeClock) -> None:
    alert = await walker.ingest("leak")
    assert alert.state is State.NEW
    [(moved, rule)] = await walker.fire()
    assert (moved.id, moved.state, rule) == (alert.id, State.ACTIVE, "T1")
    assert moved.escalation_level == 0
    assert moved.last_notified_at == clock.now
    # The next level is due `delay` after the alert was opened.
    assert moved.next_escalation_at == alert.opened_at + 600_000
    assert await walker.timer(alert.id) == f"{alert.id}|1|1|0"
    assert await walker.fire() == []  # nothing until then


async def test_t2_each_later_level_escalates_and_records_its_level(
    walker: Walker, clock: FakeClock
) -> None:
    alert = await walker.ingest("leak")
    await walker.fire()
    clock.advance(599)
    assert await walker.fire() == []
    clock.advance(1)
    [(moved, rule)] = await walker.fire()
    assert (moved.state, rule, moved.escalation_level) == (State.ESCALATED, "T2", 1)
    clock.advance(600)
    [(moved, rule)] = await walker.fire()  # escalated -> escalated
    assert (moved.state, rule, moved.escalation_level) == (State.ESCALATED, "T2", 2)
    assert moved.next_escalation_at is None  # the last level, no repeat
    assert await walker.timer(alert.id) is None
    clock.advance(3600)
    assert await walker.fire() == []


async def test_t2_from_new_when_a_later_level_completes_first(
    walker: Walker, clock: FakeClock
) -> None:
    """A level >= 1 finishing for an alert still `new` (its level 0 still in flight
    elsewhere) escalates it directly: new is in T2's from-states."""
    alert = await walker.ingest("leak")
    member = TimerMember(alert.id, 1, 1, 0)
    flush = await walker.batch(member, alert, clock.now)
    [(moved, rule)] = await walker.complete(flush)
    assert (moved.state, rule, moved.escalation_level) == (State.ESCALATED, "T2", 1)


async def test_completing_a_batch_again_changes_nothing(walker: Walker, clock: FakeClock) -> None:
    """The engine retries a complete whose reply a Redis blip lost: the second call finds
    the members no longer pending and leaves the alerts (and their history) alone."""
    alert = await walker.ingest("leak")
    [flush] = await walker.claim()
    [(moved, rule)] = await walker.complete(flush)
    assert (moved.state, rule) == (State.ACTIVE, "T1")
    before = await walker.alerts.redis.hgetall(walker.keys.alert(alert.id))
    assert await walker.complete(flush) == []
    assert await walker.alerts.redis.hgetall(walker.keys.alert(alert.id)) == before


async def into_state(walker: Walker, clock: FakeClock, state: State) -> AlertRecord:
    alert = await walker.ingest(f"s{next(_ids)}")
    if state in (State.ACTIVE, State.ESCALATED):
        await walker.fire()
    if state is State.ESCALATED:
        clock.advance(600)
        await walker.fire()
    if state in (State.ACKNOWLEDGED, State.RESOLVED):
        action = "ack" if state is State.ACKNOWLEDGED else "resolve"
        assert (await walker.alerts.command(action, alert.id, "anna", None)).alert
    found = await walker.alert(alert.id)
    assert found.state is state
    return found


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("state", list(State))
async def test_completing_a_level_follows_the_table(
    walker: Walker, clock: FakeClock, state: State, level: int
) -> None:
    """complete_flush.lua against models.TRANSITIONS for every (state, level): level 0 is
    `activate` (T1), a later level `escalate` (T2); without a rule nothing changes state,
    and an alert that must not be paged (acknowledged, resolved) is not touched at all."""
    alert = await into_state(walker, clock, state)
    member = TimerMember(alert.id, alert.epoch, level, 0)
    flush = await walker.batch(member, alert, clock.now)
    moved = await walker.complete(flush)
    after = await walker.alert(alert.id)
    expected = next_state("activate" if level == 0 else "escalate", state)
    if state in (State.ACKNOWLEDGED, State.RESOLVED):
        assert moved == []
        assert (after.state, after.escalation_level) == (state, alert.escalation_level)
        assert after.next_escalation_at is None
        return
    [(record, rule)] = moved
    if expected is None:
        assert (after.state, rule) == (state, "")  # e.g. a `repeat` round of level 0
    else:
        assert (after.state, rule) == (expected[1], expected[0])
    assert after.escalation_level == max(level, alert.escalation_level)
    assert record.state is after.state


def test_the_table_gives_t1_and_t2_as_complete_flush_applies_them() -> None:
    rules = {rule: (action, sources, target) for rule, action, sources, target in TRANSITIONS}
    assert rules["T1"] == ("activate", frozenset({State.NEW}), State.ACTIVE)
    assert rules["T2"] == (
        "escalate",
        frozenset({State.NEW, State.ACTIVE, State.ESCALATED}),
        State.ESCALATED,
    )


@pytest.mark.parametrize("action", ["ack", "resolve"])
async def test_ack_or_resolve_drops_the_pending_timer(
    walker: Walker, clock: FakeClock, action: str
) -> None:
    alert = await walker.ingest("leak")
    await walker.fire()
    assert await walker.timers() == [f"{alert.id}|1|1|0"]
    await walker.alerts.command(action, alert.id, "anna", None)
    assert await walker.timers() == []
    after = await walker.alert(alert.id)
    assert after.next_escalation_at is None
    clock.advance(3600)
    assert await walker.claim() == []  # nothing to send


@pytest.mark.parametrize("action", ["ack", "resolve"])
async def test_schedule_drops_a_timer_left_for_an_alert_that_stopped_escalating(
    walker: Walker, clock: FakeClock, action: str
) -> None:
    """A timer member still in the zset (a restore from backup, a script of an older
    version) of an acknowledged or resolved alert is removed by schedule.lua, unsent."""
    alert = await walker.ingest("leak")
    await walker.fire()
    await walker.alerts.command(action, alert.id, "anna", None)
    stale = f"{alert.id}|1|1|0"
    await walker.alerts.redis.zadd(walker.keys.timers, {stale: clock.now})
    assert await walker.store.schedule_due(DIGEST_MS) == 0
    assert await walker.timers() == []
    assert await walker.store.claim_flushes(LEASE_MS) == []


@pytest.mark.parametrize("action", ["ack", "resolve"])
async def test_a_batch_taken_before_the_ack_is_dropped_or_left_alone(
    walker: Walker, clock: FakeClock, action: str
) -> None:
    """Acknowledged between schedule and claim: claim_flush drops it from the batch.
    Acknowledged while its batch is being sent: complete_flush leaves it as it is."""
    first = await walker.ingest("one")
    second = await walker.ingest("two")
    await walker.store.schedule_due(DIGEST_MS)
    await walker.alerts.command(action, first.id, "anna", None)
    flushes = await walker.store.claim_flushes(LEASE_MS)
    assert [a.id for f in flushes for _, a in f.steps] == [second.id]
    [flush] = flushes
    await walker.alerts.command(action, second.id, "anna", None)
    assert await walker.complete(flush) == []
    after = await walker.alert(second.id)
    assert after.state is (State.ACKNOWLEDGED if action == "ack" else State.RESOLVED)
    assert await walker.timer(second.id) is None
    clock.advance(3600)
    assert await walker.claim() == []


async def reopened(walker: Walker, name: str) -> tuple[AlertRecord, AlertRecord]:
    """An alert resolved and fired again within the dedup window: epoch 2, same id."""
    first = await walker.ingest(name)
    await walker.ingest(name, status="resolved")
    again = await walker.ingest(name)
    assert (again.id, again.epoch, again.state) == (first.id, 2, State.NEW)
    return first, again


async def test_a_reopened_alert_ignores_the_old_epochs_timer(
    walker: Walker, clock: FakeClock
) -> None:
    first, again = await reopened(walker, "leak")
    assert await walker.timer(again.id) == f"{again.id}|2|0|0"
    old = f"{first.id}|1|1|0"  # epoch 1's level 1, e.g. restored from a backup
    await walker.alerts.redis.zadd(walker.keys.timers, {old: clock.now - 1})
    [flush] = await walker.claim()
    assert [str(m) for m, _ in flush.steps] == [f"{again.id}|2|0|0"]
    assert old not in await walker.timers()
    [(moved, rule)] = await walker.complete(flush)
    assert (moved.state, rule, moved.escalation_level, moved.epoch) == (State.ACTIVE, "T1", 0, 2)


async def test_an_old_epochs_batch_finishing_after_the_reopen_changes_nothing(
    walker: Walker, clock: FakeClock
) -> None:
    """Level 0 of epoch 1 is being sent when the alert resolves and fires again: that
    send finishing must neither move epoch 2 on nor replace its timer."""
    alert = await walker.ingest("leak")
    [old_flush] = await walker.claim()
    await walker.ingest("leak", status="resolved")
    again = await walker.ingest("leak")
    assert again.epoch == 2
    assert await walker.complete(old_flush) == []
    after = await walker.alert(alert.id)
    assert (after.state, after.epoch) == (State.NEW, 2)
    assert await walker.timer(alert.id) == f"{alert.id}|2|0|0"
    # Epoch 2's level 0 is one page of the same (group, level): at most one per digest
    # interval, so it goes out one interval after epoch 1's.
    clock.advance(DIGEST_MS / 1000)
    [(moved, rule)] = await walker.fire()
    assert (moved.state, rule, moved.epoch) == (State.ACTIVE, "T1", 2)


async def test_an_old_epochs_batch_whose_sender_died_comes_back_without_it(
    walker: Walker, clock: FakeClock
) -> None:
    """Level 0 of epoch 1 was claimed by a replica that died; the alert resolved and
    fired again meanwhile. When the lease brings the batch back, epoch 1 is dropped
    from it and only epoch 2 is sent, once."""
    alert = await walker.ingest("leak")
    await walker.claim()  # ... and never completed
    await walker.ingest("leak", status="resolved")
    await walker.ingest("leak")
    assert await walker.claim() == []  # the batch is still leased to the dead replica
    clock.advance(LEASE_MS / 1000)
    [flush] = await walker.claim()
    assert [str(m) for m, _ in flush.steps] == [f"{alert.id}|2|0|0"]
    [(moved, rule)] = await walker.complete(flush)
    assert (moved.state, rule, moved.epoch) == (State.ACTIVE, "T1", 2)
    assert await walker.claim() == []


FIRST, OTHER, NEXT = "call-1", "another-replica", "call-2"  # claim tokens


async def test_a_claim_asked_again_with_its_token_gets_its_batches_back(
    walker: Walker, clock: FakeClock
) -> None:
    """The engine retries a claim whose reply a Redis blip lost with the same token: it
    gets the batches it took, which nobody else can take until the lease runs out."""
    alert = await walker.ingest("leak")
    await walker.store.schedule_due(DIGEST_MS)
    [first] = await walker.store.claim_flushes(LEASE_MS, token=FIRST)
    assert await walker.store.claim_flushes(LEASE_MS, token=OTHER) == []
    [again] = await walker.store.claim_flushes(LEASE_MS, token=FIRST)
    assert again.key == first.key
    assert [a.id for _, a in again.steps] == [alert.id]
    # The caller's next call lets Redis forget the first reply.
    assert await walker.store.claim_flushes(LEASE_MS, token=NEXT, previous=FIRST) == []
    assert not await walker.alerts.redis.exists(walker.keys.claimed(FIRST))
    assert await walker.store.claim_flushes(LEASE_MS, token=FIRST) == []


async def test_a_restarted_replica_takes_back_what_its_last_run_claimed(
    walker: Walker, clock: FakeClock
) -> None:
    """bury.lua: the run before (same client id, killed) had a batch claimed and a
    delivery key pending; both are free for the new run at once, not after the lease.
    Another replica's claims and reservations are left alone."""
    store = walker.store
    await walker.ingest("leak")
    await walker.ingest("smoke")
    await store.schedule_due(DIGEST_MS)
    assert await store.bury("a", "a:1", 2 * LEASE_MS) == 0  # the first run: nothing before
    [mine] = await store.claim_flushes(LEASE_MS, limit=1, token=FIRST, owner="a:1")
    [theirs] = await store.claim_flushes(LEASE_MS, limit=1, token=OTHER, owner="b:1")
    ours, other = walker.keys.delivery("x", "1"), walker.keys.delivery("x", "2")
    assert await store.reserve([ours], "a:1.aaaa", LEASE_MS) == [True]
    assert await store.reserve([other], "b:1.bbbb", LEASE_MS) == [True]

    assert await store.bury("a", "a:2", 2 * LEASE_MS) == 1  # killed; started again
    [again] = await store.claim_flushes(LEASE_MS, token=NEXT, owner="a:2")
    assert again.key == mine.key != theirs.key
    assert await store.reserve([ours, other], "a:2.cccc", LEASE_MS) == [True, False]
    assert await store.bury("a", "a:2", 2 * LEASE_MS) == 0  # the same run again: nothing
