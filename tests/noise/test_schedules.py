"""Recurring maintenance windows: when a window is on (across midnight, in the configured
zone), how a bad schedule is reported, and the window as a silence end to end."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from homealert_mqtt.config import ConfigError, load_config
from homealert_mqtt.noise.matchers import Matcher
from homealert_mqtt.noise.schedules import Schedule, parse_clock
from tests.conftest import FakeClock
from tests.escalation.sends import sends, settle, wait_sends
from tests.noise.conftest import LEAK, sms_policy
from tests.probe import Probe

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = Schedule(
    "night", Matcher.parse({"source": "garage"}), frozenset({0}), parse_clock("22:00"),
    parse_clock("07:00"),
)  # fmt: skip


def ms(text: str, zone: ZoneInfo = BERLIN) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=zone).timestamp() * 1000)


@pytest.mark.parametrize(
    ("local", "on"),
    [
        ("2026-11-30 21:59", False),  # Monday, before
        ("2026-11-30 22:00", True),
        ("2026-11-30 23:59", True),
        ("2026-12-01 03:00", True),  # Tuesday night: Monday's window
        ("2026-12-01 06:59", True),
        ("2026-12-01 07:00", False),  # the end is the first minute it is off
        ("2026-12-01 23:00", False),  # Tuesday's would-be window: not a listed day
        ("2026-11-30 03:00", False),  # Monday morning: Sunday's window, Sunday not listed
    ],
)
def test_a_window_crosses_midnight_and_belongs_to_its_start_day(local: str, on: bool) -> None:
    window = NIGHT.window_at(ms(local), BERLIN)
    assert (window is not None) is on
    if window is not None:
        assert window == (ms("2026-11-30 22:00"), ms("2026-12-01 07:00"))


def test_the_window_follows_the_zone_across_a_dst_change() -> None:
    # 2026-03-29 is a Sunday; clocks go from 02:00 to 03:00 in Berlin that night.
    saturday = Schedule(
        "sat", Matcher.parse({"source": "x"}), frozenset({5}), parse_clock("22:00"),
        parse_clock("07:00"),
    )  # fmt: skip
    start, end = saturday.window_at(ms("2026-03-29 01:00"), BERLIN) or (0, 0)
    assert (end - start) // 3_600_000 == 8  # 22:00 to 07:00 is 8 hours that night


def _write(tmp_path: Path, alerts: dict[str, Any]) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"alerts": alerts}))
    return path


@pytest.mark.parametrize(
    ("alerts", "problem"),
    [
        (
            {"silences": {"schedules": [{"name": "n", "matchers": {"source": "x"},
                                         "start": "25:00", "end": "07:00"}]}},
            "alerts.silences.schedules[0].start: expected a time HH:MM from 00:00 to 23:59, "
            "got '25:00'",
        ),
        (
            {"silences": {"schedules": [{"name": "n", "matchers": {}, "start": "22:00",
                                         "end": "07:00"}]}},
            "alerts.silences.schedules[0].matchers: an empty matcher would match every alert",
        ),
        (
            {"silences": {"schedules": [{"name": "n", "matchers": {"colour": "red"},
                                         "start": "22:00", "end": "07:00"}]}},
            "alerts.silences.schedules[0].matchers.colour: unknown field",
        ),
        (
            {"silences": {"schedules": [{"name": "n", "matchers": {"source": "x"},
                                         "days": ["funday"], "start": "22:00",
                                         "end": "07:00"}]}},
            "alerts.silences.schedules[0].days[0]: expected one of mon",
        ),
        (
            {"silences": {"schedules": [{"name": "n", "matchers": {"source": "x"},
                                         "start": "22:00", "end": "22:00"}]}},
            "alerts.silences.schedules[0]: start and end are the same time",
        ),
        (
            {"silences": {"schedules": [
                {"name": "n", "matchers": {"source": "x"}, "start": "22:00", "end": "07:00"},
                {"name": "n", "matchers": {"source": "y"}, "start": "20:00", "end": "21:00"},
            ]}},
            "alerts.silences.schedules[1].name: a second schedule named 'n'",
        ),
        ({"timezone": "Mars/Olympus"}, "alerts.timezone: unknown time zone 'Mars/Olympus'"),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_named_by_its_key_path(
    tmp_path: Path, alerts: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, alerts), environ={})
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_a_schedule_is_read(tmp_path: Path) -> None:
    alerts = {
        "timezone": "Europe/Berlin",
        "silences": {"schedules": [{"name": "night", "matchers": {"source": "garage"},
                                    "days": ["mon"], "start": "22:00", "end": "07:00"}]},
    }  # fmt: skip
    settings = load_config(_write(tmp_path, alerts), environ={})
    assert settings.alerts.timezone == "Europe/Berlin"
    assert settings.alerts.schedules == (NIGHT,)


async def test_an_alert_in_a_window_carries_the_schedule_and_pages_when_it_ends(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    # The fake clock starts on Friday 2027-01-15 08:00 UTC: a window from 07:30 to 09:00.
    window = {"name": "morning", "matchers": {"source": "basement"}, "days": ["fri"],
              "start": "07:30", "end": "09:00"}  # fmt: skip
    settings, smtp, http = escalation_settings(
        sms_policy(timezone="UTC", silences={"schedules": [window]})
    )
    await start_service(settings, clock=clock)
    state = await probe.wait_for(
        f"{probe.base}/silence/schedule:morning", lambda s: bool(s.payload)
    )
    assert state.json()["ends_at"] == "2027-01-15T09:00:00.000Z"
    assert state.json()["created_by"] == "schedule"
    await probe.alert(**LEAK)
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    alert_id = created.json()["id"]
    await probe.state(alert_id, lambda s: s["silenced_by"] == ["schedule:morning"])
    clock.advance(3599)
    await settle()
    assert sends(smtp, http) == []
    clock.advance(1)  # 09:00
    await wait_sends(smtp, http, 1)
    await probe.state(alert_id, lambda s: s["silenced_by"] == [])
    await probe.wait_for(f"{probe.base}/silence/schedule:morning", lambda s: s.payload == b"")


async def test_a_window_expired_early_stays_off_until_its_end(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    window = {"name": "morning", "matchers": {"source": "basement"}, "start": "07:30",
              "end": "09:00"}  # fmt: skip
    settings, smtp, http = escalation_settings(
        sms_policy(timezone="UTC", silences={"schedules": [window]})
    )
    await start_service(settings, clock=clock)
    topic = f"{probe.base}/silence/schedule:morning"
    await probe.wait_for(topic, lambda s: bool(s.payload))
    await probe.publish(f"{topic}/expire", b"")
    cleared = await probe.wait_for(topic, lambda s: s.payload == b"")
    mark = probe.seen.index(cleared) + 1
    await probe.alert(**LEAK)
    await wait_sends(smtp, http, 1)  # not silenced: the window is off
    await settle()
    assert [s for s in probe.seen[mark:] if s.topic == topic and s.payload] == []
    # The next day's window comes as usual.
    clock.advance(23.5 * 3600)
    await probe.wait_for(topic, lambda s: bool(s.payload), after=mark)
