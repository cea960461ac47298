"""iso() and the published state of alerts and groups (docs/mqtt-api.md, "State out")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from homealert_mqtt.models import AlertRecord, GroupRecord, Priority, State, iso

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def test_iso_examples() -> None:
    assert iso(None) is None
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_767_323_045_007) == "2026-01-02T03:04:05.007Z"
    assert iso(1_767_323_045_999) == "2026-01-02T03:04:05.999Z"
    assert iso(1_767_323_046_000) == "2026-01-02T03:04:06.000Z"
    assert iso(LAST_MS) == "9999-12-31T23:59:59.999Z"


@settings(max_examples=1000, deadline=None)
@given(st.integers(min_value=0, max_value=LAST_MS))
def test_iso_is_exact(ms: int) -> None:
    moment = EPOCH + timedelta(milliseconds=ms)
    assert iso(ms) == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    assert iso(ms) == moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_alert_state() -> None:
    alert = AlertRecord(
        id="nas-disk_space-67fb111c",
        state=State.ACKNOWLEDGED,
        priority=Priority.P2,
        severity="high",
        source="nas",
        type="disk_space",
        message="Küche 95 %",
        attributes={"disk": "/dev/sda", "used": 0.95},
        count=3,
        first_seen=1_767_323_045_007,
        last_seen=1_767_323_105_007,
        group_id="g-nas-1a2b3c",
        escalation_level=1,
        next_escalation_at=None,
        acknowledged_by="anna",
        acknowledged_at=1_767_323_110_500,
        ack_note="on it",
        resolved_at=None,
        resolved_by=None,
        fingerprint="67fb111cecaecafddc874925710d1e43",
        epoch=1,
        updated_at=1_767_323_110_500,
        timestamp=1_767_323_100_000,
        last_notified_at=1_767_323_046_000,
    )
    assert json.dumps(alert.to_public(), separators=(",", ":"), ensure_ascii=False) == (
        '{"id":"nas-disk_space-67fb111c","state":"acknowledged","priority":"P2",'
        '"severity":"high","source":"nas","type":"disk_space","message":"Küche 95 %",'
        '"attributes":{"disk":"/dev/sda","used":0.95},"count":3,'
        '"first_seen":"2026-01-02T03:04:05.007Z","last_seen":"2026-01-02T03:05:05.007Z",'
        '"timestamp":"2026-01-02T03:05:00.000Z","group_id":"g-nas-1a2b3c",'
        '"escalation_level":1,"next_escalation_at":null,"acknowledged_by":"anna",'
        '"acknowledged_at":"2026-01-02T03:05:10.500Z","ack_note":"on it",'
        '"resolved_at":null,"resolved_by":null,"updated_at":"2026-01-02T03:05:10.500Z",'
        '"last_notified_at":"2026-01-02T03:04:06.000Z","silenced_by":[],"inhibited_by":[],"cleared_at":null,"flapping":false}'
    )


def test_group_state() -> None:
    group = GroupRecord(
        id="g-nas-1a2b3c",
        key="source=nas,type=disk_space",
        alert_ids=("nas-disk_space-67fb111c",),
        highest_priority=None,
        state="resolved",
        created_at=1_767_323_045_007,
        updated_at=1_767_323_110_500,
    )
    assert group.to_public() == {
        "id": "g-nas-1a2b3c",
        "key": "source=nas,type=disk_space",
        "alert_ids": ["nas-disk_space-67fb111c"],
        "count": 1,
        "highest_priority": None,
        "state": "resolved",
        "created_at": "2026-01-02T03:04:05.007Z",
        "updated_at": "2026-01-02T03:05:10.500Z",
    }
