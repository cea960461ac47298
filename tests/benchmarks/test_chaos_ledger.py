"""The chaos soak's accounting (benchmarks/chaos_ledger.py) on made-up runs: which pages
are due, which are missed, late, doubled (inside or outside the at-least-once window) or
unexpected, and which alerts are lost or in the wrong state. No processes: fast."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from homealert_mqtt.notify.phone import twiml
from homealert_mqtt.notify.templates import TemplateRenderer, TemplatesConfig

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
ledger: Any = importlib.import_module("chaos_ledger")
config: Any = importlib.import_module("chaos_config")

T0 = 1_800_000_000.0  # seconds
LEVELS = config.policy_levels([0, 3, 6])


def alert(name: str = "a1", **fields: Any) -> Any:
    base: dict[str, Any] = {
        "id": name,
        "type": f"t-{name}",
        "state": "escalated",
        "count": 1,
        "level": 2,
        "opened_ms": int(T0 * 1000),
    }
    return ledger.StoredAlert(**(base | fields))


def page(level: int, channel: str, at: float, alert_id: str = "a1", kind: str = "alert") -> Any:
    recipient = config.recipients(level)[channel]
    return ledger.Page(at, channel, recipient, kind, level, (alert_id,))


def all_pages(lateness: float = 0.1, alert_id: str = "a1", levels: int = 3) -> list[Any]:
    return [
        page(n, ch, T0 + LEVELS[n].delay + lateness, alert_id)
        for n in range(levels)
        for ch in config.CHANNELS
    ]


def judge(pages: list[Any], kills: tuple[Any, ...] = (), *stored: Any) -> Any:
    alerts = stored or (alert(),)
    return ledger.judge_pages({a.id: a for a in alerts}, pages, LEVELS, list(kills), end=T0 + 60)


def kill(target: str, at: float) -> Any:
    return ledger.Kill(at, target, at + 0.05)


def test_every_level_of_an_unacknowledged_alert_is_due_once() -> None:
    verdict = judge(all_pages())
    assert (verdict.expected, verdict.allowed, verdict.received) == (15, 0, 15)
    assert (verdict.missed, verdict.late, verdict.doubled, verdict.unexpected) == ([], [], [], [])
    assert verdict.lateness == pytest.approx([0.1] * 15)


def test_missed_late_and_doubled_pages_are_counted() -> None:
    pages = all_pages()
    pages.remove(page(1, "sms", T0 + 3.1))  # missed
    pages.remove(page(2, "email", T0 + 6.1))
    pages.append(page(2, "email", T0 + 8.5))  # 2.5 s late
    pages.append(page(0, "slack", T0 + 30))  # a second copy, no kill anywhere near
    verdict = judge(pages)
    assert verdict.missed == [("a1", 1, "sms", "+15550000001")]
    assert [(k, round(late, 1)) for k, _due, late in verdict.late] == [
        (("a1", 2, "email", "l2@soak.test"), 2.5)
    ]
    assert verdict.doubled == [("a1", 0, "slack", "soak_l0")]
    assert verdict.doubled_window == []


def test_a_double_after_a_service_kill_at_the_first_copy_is_in_the_window() -> None:
    pages = [*all_pages(), page(0, "sms", T0 + 90)]  # sent again after the lease
    verdict = judge(pages, (kill("service", T0 + 0.4),))
    assert verdict.doubled == []
    assert verdict.doubled_window == [(("a1", 0, "sms", "+15550000000"), T0 + 0.4)]


@pytest.mark.parametrize(
    ("target", "at"),
    [("redis", T0 + 0.4), ("service", T0 + 5), ("broker", T0 + 0.4)],
    ids=["redis-kill", "service-kill-later", "broker-kill"],
)
def test_other_doubles_are_not_excused(target: str, at: float) -> None:
    verdict = judge([*all_pages(), page(0, "sms", T0 + 90)], (kill(target, at),))
    assert verdict.doubled == [("a1", 0, "sms", "+15550000000")]
    assert verdict.doubled_window == []


def test_three_copies_are_doubled_even_with_a_kill_in_the_window() -> None:
    pages = [*all_pages(), page(0, "sms", T0 + 50), page(0, "sms", T0 + 90)]
    verdict = judge(pages, (kill("service", T0 + 0.4),))
    assert verdict.doubled == [("a1", 0, "sms", "+15550000000")]


def test_the_ack_race_margin() -> None:
    # Acked 1 s after level 1 was due: level 0 required, level 1 inside the margin
    # (either way is right), level 2 (due 2 s after the ack) inside it too.
    racy = alert(state="acknowledged", level=1, acked_ms=int((T0 + 4) * 1000))
    verdict = judge(all_pages(levels=1), (), racy)
    assert (verdict.expected, verdict.allowed) == (5, 10)
    assert (verdict.missed, verdict.unexpected) == ([], [])
    # Acked at +1.5 s: levels 0 and 1 are inside the margin (1.5 s before and after the
    # ack); level 2 (due 4.5 s after the ack) must not be paged.
    early = alert(state="acknowledged", level=0, acked_ms=int((T0 + 1.5) * 1000))
    verdict = judge([*all_pages(levels=2), page(2, "phone", T0 + 6.2)], (), early)
    assert (verdict.expected, verdict.allowed) == (0, 10)
    assert verdict.unexpected == [(("a1", 2, "phone", "+15550000102"), "due after the ack/resolve")]


def test_level_verdict_boundaries() -> None:
    margin, end = 2000, 10**9
    assert ledger.level_verdict(1000, None, end, margin) == "required"
    assert ledger.level_verdict(end - 1000, None, end, margin) == "allowed"  # due at the end
    assert ledger.level_verdict(1000, 3001, end, margin) == "required"
    assert ledger.level_verdict(1000, 3000, end, margin) == "allowed"
    assert ledger.level_verdict(5000, 3000, end, margin) == "allowed"
    assert ledger.level_verdict(5001, 3000, end, margin) == "unexpected"
    # The first of ack and resolve stops escalation.
    assert alert(acked_ms=9, resolved_ms=5).stop_ms == 5


def test_pages_that_belong_to_nobody_are_unexpected() -> None:
    pages = [
        page(0, "sms", T0, alert_id="ghost"),
        page(0, "email", T0, kind="resolved"),
        ledger.Page(T0, "sms", "+19999999999", "alert", 0, ("a1",)),
        ledger.Page(T0, "sms", "+15550000000", "alert", 7, ("a1",)),
        None,
    ]
    verdict = judge(pages)
    assert [why for _key, why in verdict.unexpected] == [
        "an alert Redis does not have",
        "a resolved notice",
        "a recipient the level does not page",
        "a recipient the level does not page",
    ]
    assert verdict.unattributed == 1


def test_an_mqtt_page_is_excused_only_when_the_broker_died_as_it_went_out() -> None:
    pages = [p for p in all_pages(levels=1) if p.channel != "mqtt"]
    verdict = judge(
        pages, (kill("broker", T0 + 0.3),), alert(level=0, acked_ms=int(T0 * 1000 + 2500))
    )
    assert verdict.missed_broker == [("a1", 0, "mqtt", "l0")]
    assert verdict.missed == []
    # Published after the broker was gone (or back, the service not yet reconnected):
    # the service's to retry.
    verdict = judge(
        pages, (kill("broker", T0 - 0.1),), alert(level=0, acked_ms=int(T0 * 1000 + 2500))
    )
    assert verdict.missed == [("a1", 0, "mqtt", "l0")]
    verdict = judge(
        pages, (kill("broker", T0 - 2),), alert(level=0, acked_ms=int(T0 * 1000 + 2500))
    )
    assert verdict.missed == [("a1", 0, "mqtt", "l0")]


def sent(name: str, *, firing: int = 1, ack: bool = False, resolve: bool = False) -> Any:
    def msg(offset: float) -> Any:
        return ledger.Msg(T0 + offset, T0 + offset + 0.01)

    return ledger.SentAlert(
        type=f"t-{name}",
        firing=[msg(i * 0.1) for i in range(firing)],
        ack=msg(5) if ack else None,
        resolve=msg(6) if resolve else None,
    )


def test_final_states_and_counts() -> None:
    sends = {
        s.type: s
        for s in (
            sent("ok", firing=3, resolve=True),
            sent("acked", ack=True),
            sent("open"),
            sent("stuck"),
            sent("lost"),
            sent("reopened", ack=True, resolve=True),
            sent("counted", firing=2),
        )
    }
    stored = {
        a.type: a
        for a in (
            alert("ok", state="resolved", count=3, resolved_ms=1),
            alert("acked", state="acknowledged", level=1, acked_ms=1),
            alert("open"),
            alert("stuck", state="active", level=0),  # the level-1 timer never fired
            alert("reopened", state="acknowledged"),
            alert("counted", count=3),
        )
    }
    verdict = ledger.judge_alerts(sends, stored, [], last_level=2, save_s=1)
    assert verdict.lost == ["t-lost"]
    assert verdict.wrong == [
        "reopened: expected resolved, is acknowledged at level 2",
        "stuck: expected escalated, is active at level 0",
    ]
    assert verdict.count_high == ["counted: count 3, sent 2"]
    assert (verdict.sent, verdict.stored) == (7, 6)


def test_a_broker_kill_right_after_the_puback_excuses_a_loss() -> None:
    sends = {"t-x": sent("x")}
    kills = [kill("broker", T0 + 0.5)]
    verdict = ledger.judge_alerts(sends, {}, kills, last_level=2, save_s=1)
    assert (verdict.lost, verdict.lost_broker) == ([], ["t-x"])
    later = ledger.judge_alerts(sends, {}, [kill("broker", T0 + 9)], last_level=2, save_s=1)
    assert later.lost == ["t-x"]
    by_redis = ledger.judge_alerts(sends, {}, [kill("redis", T0 + 0.5)], last_level=2, save_s=1)
    assert by_redis.lost == ["t-x"]


def test_the_soak_template_names_alert_and_level_on_every_channel(tmp_path: Path) -> None:
    """Render the soak's template with the service's renderer, shape each channel's
    request the way the sinks record it, and attribute it back."""
    (tmp_path / "soak.j2").write_text(config.TEMPLATE)
    renderer = TemplateRenderer(
        TemplatesConfig.from_section({"base_dir": str(tmp_path), "default_template": "soak.j2"})
    )
    state = {"id": "soak-t000042-0123abcd", "type": "t000042", "source": "soak", "priority": "P1"}
    message = renderer.render("alert", [state], level=2)
    who = config.recipients(2)
    raws = [
        {
            "channel": "email",
            "recipient": who["email"],
            "text": f"{message.subject}\n{message.text}",
        },
        {"channel": "slack", "text": f"@{who['slack']} {message.slack}"},
        {"channel": "sms", "recipient": who["sms"], "text": message.short},
        {"channel": "phone", "recipient": who["phone"], "text": twiml(message.voice, "en-US")},
        {
            "channel": "mqtt",
            "text": json.dumps({"text": message.text, "recipient": who["mqtt"]}),
        },
    ]
    keys = set()
    for raw in raws:
        parsed = ledger.parse_page({"at": T0, **raw})
        assert parsed is not None, raw
        assert (parsed.kind, parsed.alert_ids) == ("alert", (state["id"],))
        keys.add((parsed.level, parsed.channel, parsed.recipient))
    assert keys == {(2, ch, r) for ch, r in LEVELS[2].targets}


def test_late_pages_are_grouped_by_the_kill_that_started_it() -> None:
    late = [
        (("a", 1, "sms", "x"), T0 + 5, 3.0),  # due 4 s after the Redis kill
        (("b", 1, "sms", "x"), T0 + 39.9, 9.0),  # due just before the service kill
        (("c", 1, "sms", "x"), T0 + 20, 2.5),  # no kill near
    ]
    kills = [kill("redis", T0 + 6), kill("service", T0 + 40), kill("broker", T0 + 45)]
    assert dict(ledger.late_by_kill(late, kills, T0)) == {
        "redis +6.0s": 1,
        "service +40.0s": 1,
        "no kill": 1,
    }


def test_pages_late_only_by_the_services_restart_are_counted_apart() -> None:
    killed = ledger.with_online([kill("service", T0 + 2.9)], [T0 - 50, T0 + 5.5])
    assert killed[0].online == T0 + 5.5
    pages = all_pages()
    pages.remove(page(1, "sms", T0 + 3.1))
    pages.append(page(1, "sms", T0 + 6.5))  # due +3 while down, out 1 s after online
    pages.remove(page(0, "slack", T0 + 0.1))
    pages.append(page(0, "slack", T0 + 6))  # due 2.9 s before the kill: it had its chance
    pages.remove(page(1, "email", T0 + 3.1))
    pages.append(page(1, "email", T0 + 9))  # due while down, but 3.5 s after online
    verdict = judge(pages, tuple(killed))
    assert [k for k, _d, _l in verdict.late_restart] == [("a1", 1, "sms", "+15550000001")]
    assert sorted(k for k, _d, _l in verdict.late) == [
        ("a1", 0, "slack", "soak_l0"),
        ("a1", 1, "email", "l1@soak.test"),
    ]
    # Due 1 s before the kill: the kill cut into its 2 s, so the restart excuses it.
    late_kill = ledger.with_online([kill("service", T0 + 1)], [T0 + 2])
    pages = [p for p in all_pages(levels=1) if p.channel != "sms"] + [page(0, "sms", T0 + 3.5)]
    verdict = judge(pages, tuple(late_kill))
    assert [k for k, _d, _l in verdict.late_restart] == [("a1", 0, "sms", "+15550000000")]


def test_an_mqtt_page_the_broker_sent_again_after_its_kill_is_counted_apart() -> None:
    pages = [*all_pages(), page(0, "mqtt", T0 + 3)]
    verdict = judge(pages, (kill("broker", T0 + 1),))
    assert verdict.doubled_broker == [(("a1", 0, "mqtt", "l0"), T0 + 1)]
    assert verdict.doubled == []
    # Another channel's double is the service's, broker kill or not.
    verdict = judge([*all_pages(), page(0, "sms", T0 + 3)], (kill("broker", T0 + 1),))
    assert verdict.doubled == [("a1", 0, "sms", "+15550000000")]


def test_an_mqtt_clear_is_told_apart_from_a_page() -> None:
    clear = {"action": "clear", "alert_ids": ["soak-t1-x"], "recipient": "l0"}
    assert ledger.is_clear({"channel": "mqtt", "text": json.dumps(clear)})
    assert not ledger.is_clear({"channel": "mqtt", "text": json.dumps({"text": "SOAK"})})
    assert not ledger.is_clear({"channel": "mqtt", "text": "not json"})
    assert not ledger.is_clear({"channel": "sms", "text": json.dumps(clear)})
