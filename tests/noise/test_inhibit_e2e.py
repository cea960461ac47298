"""Inhibition end to end: while a source is open its targets page nobody, a resolve is
never held back, and the targets still open start at level 0 when the source resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from homealert_mqtt.config import ConfigError, load_config
from tests.conftest import FakeClock
from tests.escalation.sends import sends, settle, wait_sends
from tests.noise.conftest import MANAGER, ONCALL, sms_policy
from tests.probe import Probe

OFFLINE = {"source": "nas", "type": "device_offline", "severity": "critical", "message": "NAS"}
DISK = {"source": "nas", "type": "disk_failed", "severity": "critical", "message": "disk 2"}
NAS_RULE = {
    "source_matchers": {"type": "device_offline", "source": "nas"},
    "target_matchers": {"source": "nas"},
}


def sms_to(smtp: Any, http: Any, number: str) -> list[str]:
    return [s.text for s in sends(smtp, http) if s.channel == "sms" and s.recipient == number]


async def created(probe: Probe, count: int) -> str:
    return str((await probe.wait_events("created", count))[count - 1]["id"])


async def test_a_source_keeps_its_targets_quiet_until_it_resolves(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy(inhibit_rules=[NAS_RULE]))
    await start_service(settings, clock=clock)
    await probe.alert(**OFFLINE)
    source = await created(probe, 1)
    await wait_sends(smtp, http, 1)  # the source pages; it does not inhibit itself
    await probe.state(source, lambda s: s["inhibited_by"] == [] and s["state"] == "active")
    await probe.alert(**DISK)
    target = await created(probe, 2)
    state = await probe.state(target, lambda s: s["inhibited_by"] == [source])
    assert state["next_escalation_at"] is None
    clock.advance(1800)
    await wait_sends(smtp, http, 2)  # the source's level 1
    await settle()
    assert all(
        target not in text for text in sms_to(smtp, http, ONCALL) + sms_to(smtp, http, MANAGER)
    )
    # The source resolves: the target pages from level 0, later levels timed from now.
    await probe.alert(**OFFLINE, status="resolved")
    await probe.state(target, lambda s: s["inhibited_by"] == [])
    # (4: the source's resolved notices to the two it paged, and the target's level 0)
    await wait_sends(smtp, http, 5)
    assert len([t for t in sms_to(smtp, http, ONCALL) if target in t]) == 1
    clock.advance(899)
    await settle()
    assert [t for t in sms_to(smtp, http, MANAGER) if target in t] == []
    clock.advance(1)
    await wait_sends(smtp, http, 6)
    assert len([t for t in sms_to(smtp, http, MANAGER) if target in t]) == 1


async def test_a_source_arriving_later_stops_what_is_still_to_come(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy(inhibit_rules=[NAS_RULE]))
    await start_service(settings, clock=clock)
    await probe.alert(**DISK)
    target = await created(probe, 1)
    await wait_sends(smtp, http, 1)
    await probe.alert(**OFFLINE)
    source = await created(probe, 2)
    await probe.state(target, lambda s: s["inhibited_by"] == [source])
    await wait_sends(smtp, http, 2)  # the source's level 0
    clock.advance(900)
    await wait_sends(smtp, http, 3)  # the source's level 1 ...
    await settle()
    assert [r for r in sends(smtp, http) if target in r.text and r.recipient == MANAGER] == []


async def test_a_resolve_is_never_inhibited(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(sms_policy(inhibit_rules=[NAS_RULE]))
    await start_service(settings, clock=clock)
    await probe.alert(**OFFLINE)
    await created(probe, 1)
    await probe.alert(**DISK)
    target = await created(probe, 2)
    await probe.state(target, lambda s: s["inhibited_by"] != [])
    await probe.alert(**DISK, status="resolved")
    await probe.state(target, lambda s: s["state"] == "resolved")
    await probe.alert(**OFFLINE, status="resolved")
    await settle()
    assert [r for r in sends(smtp, http) if target in r.text] == []


async def test_equal_fields_limit_what_a_source_inhibits(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    rule = {
        "source_matchers": {"type": "power_out"},
        "target_matchers": {"type": "*"},
        "equal": ["attributes.room"],
    }
    settings, _smtp, _http = escalation_settings(sms_policy(inhibit_rules=[rule]))
    await start_service(settings, clock=clock)
    base = {"severity": "critical", "message": "m"}
    await probe.alert(source="meter", type="power_out", attributes={"room": "cellar"}, **base)
    source = await created(probe, 1)
    await probe.alert(source="freezer", type="warm", attributes={"room": "cellar"}, **base)
    cellar = await created(probe, 2)
    await probe.alert(source="fridge", type="warm", attributes={"room": "kitchen"}, **base)
    kitchen = await created(probe, 3)
    await probe.state(cellar, lambda s: s["inhibited_by"] == [source])
    state = await probe.state(kitchen, lambda s: s["state"] == "active")
    assert state["inhibited_by"] == []


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"source_matchers": {}, "target_matchers": {"source": "x"}},
         "alerts.inhibit_rules[0].source_matchers: an empty matcher would match every alert"),
        ({"source_matchers": {"source": "x"}, "target_matchers": {"colour": "red"}},
         "alerts.inhibit_rules[0].target_matchers.colour: unknown field"),
        ({"source_matchers": {"source": "x"}, "target_matchers": {"source": "y"},
          "equal": ["room"]}, "alerts.inhibit_rules[0].equal[0]: unknown field"),
        ({"target_matchers": {"source": "y"}}, "alerts.inhibit_rules[0].source_matchers: required"),
    ],
)  # fmt: skip
def test_a_bad_inhibit_rule_is_named_by_its_key_path(
    tmp_path: Path, rule: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"alerts": {"inhibit_rules": [rule]}}))
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
