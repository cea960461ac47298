"""Every (action, state) pair through Redis, compared with models.TRANSITIONS.

The Lua scripts keep their own copy of the table (_lib.lua); ack and resolve are run
through command.lua as the service runs them, reopen through ingest.lua, and the whole
Lua table is compared pair by pair with the Python one.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from homealert_mqtt.models import TRANSITIONS, State, next_state
from homealert_mqtt.store.scripts import as_str
from tests.store.conftest import StoreKit

ACTIONS = sorted({name for _, name, _, _ in TRANSITIONS})
INDEXES_OPEN = {State.NEW, State.ACTIVE, State.ACKNOWLEDGED, State.ESCALATED}

# How an alert is brought into each state: the escalation engine's moves (activate,
# escalate) go through _lib.lua's transition(), the rest through command.lua.
SETUP = {
    State.NEW: [],
    State.ACTIVE: [("lua", "activate")],
    State.ESCALATED: [("lua", "escalate")],
    State.ACKNOWLEDGED: [("command", "ack")],
    State.RESOLVED: [("command", "resolve")],
}


async def alert_in(kit: StoreKit, state: State, tag: str) -> str:
    created = await kit.ingest(type=f"t_{tag}")
    assert created.outcome == "created"
    alert_id = created.alert.id
    for how, action in SETUP[state]:
        if how == "lua":
            to, _rule = await kit.lua(
                "local to, rule = transition(ARGV[1], ARGV[2], tonumber(ARGV[3]),"
                " parse_settings(ARGV[4]).retention, {})\nreturn {to, rule}",
                alert_id,
                action,
                kit.clock(),
                kit.store.lua_settings,
            )
            assert as_str(to) == state.value
        else:
            result = await kit.store.command(action, alert_id, "setup", None)
            assert result.outcome == state.value
    alert = await kit.store.get_alert(alert_id)
    assert alert is not None
    assert alert.state is state
    return alert_id


async def indexes(kit: StoreKit, alert_id: str, priority: str) -> dict[str, bool]:
    r, keys = kit.redis, kit.keys
    return {
        "open": await r.zscore(keys.open, alert_id) is not None,
        "acked": bool(await r.sismember(keys.acked, alert_id)),
        "escalated": bool(await r.sismember(keys.escalated, alert_id)),
        "priority": bool(await r.sismember(keys.by_priority(priority), alert_id)),
        "retention": await r.zscore(keys.retention, alert_id) is not None,
    }


def expected_indexes(state: State) -> dict[str, bool]:
    return {
        "open": state in INDEXES_OPEN,
        "acked": state is State.ACKNOWLEDGED,
        "escalated": state is State.ESCALATED,
        "priority": state in INDEXES_OPEN,
        "retention": True,
    }


@pytest.mark.parametrize(
    ("action", "state"), list(itertools.product(("ack", "resolve"), list(State)))
)
async def test_commands_follow_the_table(kit: StoreKit, action: str, state: State) -> None:
    alert_id = await alert_in(kit, state, f"{action}_{state.value}")
    before = await kit.store.get_alert(alert_id)
    assert before is not None
    kit.clock.advance(5)
    result = await kit.store.command(action, alert_id, "tester", "note")
    after = await kit.store.get_alert(alert_id)
    assert after is not None
    allowed = next_state(action, state)
    if allowed is not None:
        rule, target = allowed
        assert result.outcome == target.value
        assert after.state is target
        assert (await kit.redis.hget(kit.keys.alert(alert_id), "rule")).decode() == rule
        assert after.updated_at == kit.clock()
        assert after.next_escalation_at is None  # ack and resolve stop escalation
        if action == "ack":
            assert (after.acknowledged_by, after.ack_note) == ("tester", "note")
        else:
            assert (after.resolved_by, after.resolved_at) == ("tester", kit.clock())
    else:
        # Not in the table: nothing changes. The same ack twice is not an error.
        expected = "unchanged" if (action, state) == ("ack", State.ACKNOWLEDGED) else "final"
        assert result.outcome == expected
        # (rev counts the snapshots scripts handed out, not changes)
        assert dataclasses.replace(after, rev=0) == dataclasses.replace(before, rev=0)
    assert await indexes(kit, alert_id, after.priority.value) == expected_indexes(after.state)


async def test_lua_table_equals_python_table(kit: StoreKit) -> None:
    pairs = [(a, s.value) for a in ACTIONS for s in State] + [("nonsense", "new")]
    flat = [x for pair in pairs for x in pair]
    replies = await kit.lua(
        "local out = {}\n"
        "for i = 1, #ARGV, 2 do\n"
        "  local to, rule = next_state(ARGV[i], ARGV[i + 1])\n"
        "  out[#out + 1] = {to or '', rule or ''}\n"
        "end\n"
        "return out",
        *flat,
    )
    for (action, state), (to, rule) in zip(pairs, replies, strict=True):
        allowed = next_state(action, State(state))
        expected = (allowed[1].value, allowed[0]) if allowed else ("", "")
        assert (as_str(to), as_str(rule)) == expected, (action, state)


async def test_unknown_alert(kit: StoreKit) -> None:
    for action in ("ack", "resolve"):
        result = await kit.store.command(action, "no-such-alert", None, None)
        assert (result.outcome, result.alert) == ("unknown", None)


@pytest.mark.parametrize("state", list(State))
async def test_firing_again(kit: StoreKit, state: State) -> None:
    """A repeat folds into an open alert; a resolved one re-opens (T5) within the dedup
    window, and after it a new alert (the fingerprint's next occurrence) opens."""
    alert_id = await alert_in(kit, state, "again")
    kit.clock.advance(10)
    again = await kit.ingest(type="t_again")
    if state is State.RESOLVED:
        allowed = next_state("reopen", state)
        assert allowed is not None
        assert again.outcome == "reopened"
        assert again.alert.id == alert_id
        assert again.alert.state is allowed[1]
        assert (await kit.redis.hget(kit.keys.alert(alert_id), "rule")).decode() == allowed[0]
        assert again.alert.acknowledged_by is None
        assert again.alert.resolved_at is None
        assert again.alert.count == 2
    else:
        assert next_state("reopen", state) is None
        assert again.outcome == "deduplicated"
        assert (again.alert.id, again.alert.state, again.alert.count) == (alert_id, state, 2)
    assert await indexes(kit, alert_id, again.alert.priority.value) == expected_indexes(
        again.alert.state
    )


async def test_after_the_dedup_window_a_resolved_alert_stays_resolved(kit: StoreKit) -> None:
    alert_id = await alert_in(kit, State.RESOLVED, "late")
    kit.clock.advance(kit.settings.alerts.dedup.window + 1)
    again = await kit.ingest(type="t_late")
    assert again.outcome == "created"
    assert again.alert.id == f"{alert_id}-2"
    old = await kit.store.get_alert(alert_id)
    assert old is not None
    assert old.state is State.RESOLVED
