"""`homealert-mqtt test-alert`: the routing check, run as a real process; it reads
Redis when it can, and pages nobody."""

from __future__ import annotations

import json
import time
from pathlib import Path

from homealert_mqtt.models import iso
from tests.escalation.sends import sends
from tests.noise.conftest import LEAK, ONCALL, sms_policy
from tests.probe import Probe
from tests.test_cli import cli

RULE = {
    "source_matchers": {"type": "device_offline"},
    "target_matchers": {"source": "basement"},
}
WINDOW = {"name": "always", "matchers": {"type": "water*"}, "start": "00:00", "end": "23:59"}


async def test_it_shows_levels_recipients_texts_and_what_holds_the_alert_back(
    tmp_path: Path, escalation_settings, start_service, probe: Probe
) -> None:
    config = sms_policy(
        inhibit_rules=[RULE],
        types={"water_leak": {"hold_down": 30}},
        silences={"schedules": [WINDOW]},
        timezone="UTC",
    )
    settings, smtp, http = escalation_settings(config)
    await start_service(settings)
    await probe.publish(
        f"{probe.base}/silence/work/set", {"matchers": {"source": "base*"}, "duration": 3600}
    )
    await probe.wait_for(f"{probe.base}/silence/work", lambda s: bool(s.payload))
    await probe.alert(source="basement", type="device_offline", severity="low", message="x")
    source = (await probe.wait_events("created", 1))[0]["id"]
    before = len(sends(smtp, http))

    at = (int(time.time()) + 60) * 1000  # while the silence is on
    result = await cli(
        "test-alert", json.dumps(LEAK), "--json", "--at", str(iso(at)),
        "--config", str(tmp_path / "config.yaml"),
    )  # fmt: skip
    assert result.code == 0, result.text
    report = json.loads(result.out)
    assert report["id"].startswith("basement-water_leak-")
    assert report["priority"] == "P1"
    assert report["redis"] == "read"
    held = {(h["by"], h.get("id")) for h in report["held_back"]}
    assert held == {
        ("silence", "work"),
        ("schedule", "schedule:always"),
        ("inhibition", source),
        ("hold_down", None),
    }
    level0, level1 = report["levels"]
    assert level0["due"] == iso(at + 30_000)  # held down 30 s
    assert level1["due"] == iso(at + 900_000)
    [sms] = level0["sends"]
    assert (sms["channel"], sms["recipient"], sms["enabled"]) == ("sms", ONCALL, True)
    assert report["id"] in sms["text"]
    assert "Water!" in sms["text"]
    # Pages nobody, stores nothing.
    assert len(sends(smtp, http)) == before
    assert probe.events("created")[1:] == []

    text = await cli("test-alert", json.dumps(LEAK), "--config", str(tmp_path / "config.yaml"))
    assert text.code == 0, text.text
    assert "held back by:" in text.out
    assert "silence work" in text.out
    assert f"sms -> {ONCALL}" in text.out


async def test_without_redis_it_says_so_and_still_answers(tmp_path: Path, make_settings) -> None:
    make_settings(redis_url="redis://127.0.0.1:9/0")  # nothing listens on port 9
    result = await cli("test-alert", json.dumps(LEAK), "--config", str(tmp_path / "config.yaml"))
    assert result.code == 0, result.text
    assert "Redis: not reachable" in result.out
    assert "level 0" in result.out


async def test_bad_json_is_a_clear_message_and_exit_1(tmp_path: Path, make_settings) -> None:
    make_settings()
    config = str(tmp_path / "config.yaml")
    for payload, reason in (("{not json", "payload is not JSON"), ('{"source": 5}', "source")):
        result = await cli("test-alert", payload, "--config", config)
        assert result.code == 1, result.text
        assert "test-alert: not an alert the service would take" in result.out
        assert reason in result.out, result.out
        assert "Traceback" not in result.text
