"""`homealert-mqtt silence add|list|expire`, run as a real process against the test's
broker, Redis and service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from homealert_mqtt.noise.cli import parse_duration
from tests.noise.conftest import LEAK
from tests.probe import Probe
from tests.test_cli import cli


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("2h", 7200), ("1d12h", 129600), ("45s", 45), ("300", 300), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2x", "h", "0", "366d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


async def test_silence_add_list_expire(
    tmp_path: Path, make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    config = str(tmp_path / "config.yaml")
    added = await cli(
        "silence", "add", "--match", "source=basement", "--match", "type=water*",
        "--for", "2h", "--comment", "boiler work", "--by", "dad", "--id", "boiler",
        "--config", config,
    )  # fmt: skip
    assert added.code == 0, added.text
    state = await probe.wait_for(f"{probe.base}/silence/boiler", lambda s: bool(s.payload))
    assert state.json()["matchers"] == {"source": "basement", "type": "water*"}
    assert state.json()["comment"] == "boiler work"
    await probe.alert(**LEAK)
    created = await probe.wait_for(f"{probe.base}/event", lambda s: s.json()["event"] == "created")
    await probe.state(created.json()["id"], lambda s: s["silenced_by"] == ["boiler"])

    listed = await cli("silence", "list", "--json", "--config", config)
    assert listed.code == 0, listed.text
    [silence] = json.loads(listed.out)
    assert (silence["id"], silence["state"], silence["created_by"]) == ("boiler", "active", "dad")
    table = await cli("silence", "--config", config, "list")
    assert table.out.startswith("boiler"), table.text
    assert "source=basement type=water*" in table.out

    gone = await cli("silence", "expire", "boiler", "--config", config)
    assert gone.code == 0, gone.text
    await probe.wait_for(f"{probe.base}/silence/boiler", lambda s: s.payload == b"")
    assert (await cli("silence", "list", "--config", config)).out == "no silences\n"


async def test_silence_add_refuses_a_bad_matcher_before_sending(
    tmp_path: Path, make_settings
) -> None:
    make_settings()
    config = str(tmp_path / "config.yaml")
    bad = await cli("silence", "add", "--match", "colour=red", "--for", "1h", "--config", config)
    assert bad.code == 2
    assert "unknown field" in bad.out
    nothing = await cli("silence", "add", "--match", "source", "--for", "1h", "--config", config)
    assert "expected FIELD=GLOB" in nothing.out
