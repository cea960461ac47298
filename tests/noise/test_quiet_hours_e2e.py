"""Quiet hours per recipient group: sms, phone and slack held (email is not), `except`
priorities break through, one digest per (channel, recipient) when they end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from homealert_mqtt.config import ConfigError, load_config
from tests.conftest import FakeClock
from tests.escalation.sends import sends, settle, wait_sends
from tests.noise.conftest import ONCALL, sms_policy
from tests.probe import Probe

# The fake clock starts on Friday 2027-01-15 08:00 UTC: the night ends at 09:00.
NIGHT = {"start": "22:00", "end": "09:00", "except": ["P1"]}
P2 = [{"delay": 0, "channels": ["sms", "email"], "groups": ["oncall"]}]
LOW = {"source": "nas", "type": "disk_space", "severity": "high", "message": "80 %"}
FIRE = {"source": "attic", "type": "smoke", "severity": "critical", "message": "smoke"}


def config() -> dict[str, Any]:
    cfg = sms_policy(timezone="UTC")
    cfg["alerts"]["escalation"]["policies"]["p2"] = P2
    cfg["recipients"] = {"groups": {"oncall": {"quiet_hours": NIGHT}}}
    return cfg


def sms(smtp: Any, http: Any) -> list[str]:
    return [s.text for s in sends(smtp, http) if s.channel == "sms" and s.recipient == ONCALL]


async def test_quiet_hours_hold_sms_and_send_one_digest_when_they_end(
    escalation_settings, start_service, probe: Probe, clock: FakeClock
) -> None:
    settings, smtp, http = escalation_settings(config())
    await start_service(settings, clock=clock)
    await probe.alert(**LOW)
    await probe.alert(**{**LOW, "type": "disk_health"})
    await probe.alert(**{**LOW, "type": "fan"})
    created = await probe.wait_events("created", 3)
    ids = [e["id"] for e in created]
    await wait_sends(smtp, http, 3)  # the e-mails go out at night
    assert {s.channel for s in sends(smtp, http)} == {"email"}
    await probe.publish(f"{probe.base}/alert/{ids[2]}/ack", b"me")  # no longer needs anyone
    await probe.state(ids[2], lambda s: s["state"] == "acknowledged")
    # P1 breaks through.
    await probe.alert(**FIRE)
    await wait_sends(smtp, http, 4)
    assert len(sms(smtp, http)) == 1
    clock.advance(3599)
    await settle()
    assert len(sms(smtp, http)) == 1
    clock.advance(1)  # 09:00: one digest of what is still open and unacknowledged
    await wait_sends(smtp, http, 6)
    await settle()
    [_fire, digest] = sms(smtp, http)
    assert ids[0] in digest
    assert ids[1] in digest
    assert ids[2] not in digest
    # 3 e-mails, the P1's level 0 (oncall) and level 1 (manager: no quiet hours), 1 digest
    assert len(sends(smtp, http)) == 6


@pytest.mark.parametrize(
    ("hours", "problem"),
    [
        ({"start": "25:00", "end": "07:00"}, "recipients.groups.oncall.quiet_hours.start"),
        ({"start": "22:00", "end": "07:00", "except": ["P9"]},
         "recipients.groups.oncall.quiet_hours.except[0]"),
        ({"start": "22:00"}, "recipients.groups.oncall.quiet_hours.end: required"),
        ({"start": "22:00", "end": "07:00", "when": 1},
         "recipients.groups.oncall.quiet_hours.when: unknown key"),
    ],
)  # fmt: skip
def test_bad_quiet_hours_are_named_by_their_key_path(
    tmp_path: Path, hours: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "c.yaml"
    groups = {g: {"email": ["x@y"]} for g in ("oncall", "manager", "director")}
    groups["oncall"]["quiet_hours"] = hours  # type: ignore[assignment]
    path.write_text(yaml.safe_dump({"recipients": {"groups": groups}}))
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems
