"""What a newcomer meets in the first hour (issue 13): the help, the logs, the README's
commands, the licence, what the defaults notify and which channels they disable."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import tomllib
from pathlib import Path

import pytest
import yaml

from homealert_mqtt.embedded import free_port, port_or_free, running_endpoints
from tests.conftest import QUIET_CHANNELS
from tests.probe import Probe
from tests.test_cli import cli
from tests.waits import ROOT, eventually, service_process, subprocess_env


async def test_help_lists_every_environment_variable_the_service_reads() -> None:
    read = set()
    for path in (ROOT / "homealert_mqtt").rglob("*.py"):
        read |= set(re.findall(r"\"(HOMEALERT_[A-Z_]+)\"", path.read_text()))
    assert {"HOMEALERT_MQTT_URL", "HOMEALERT_REDIS_URL", "HOMEALERT_EMBEDDED_BROKER"} <= read
    top, run = await asyncio.gather(cli("--help"), cli("run", "--help"))
    for result in (top, run):
        assert result.code == 0, result.text
        assert "environment variables:" in result.out
        for name in read:
            assert name in result.out, name


def _commands(text: str) -> list[str]:
    """Shell lines that run docker (a leading `# ` stripped, trailing comments kept off)."""
    found = []
    for raw in text.splitlines():
        line = raw.strip().removeprefix("#").strip()
        if line.startswith(("cp docker/", "docker compose")):
            found.append(line.split("  #")[0].split(" #")[0].strip())
    return found


def test_readme_and_compose_header_give_the_same_docker_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running it for real (docker)", 1)[1].split("\n## ", 1)[0]
    header = (ROOT / "docker/docker-compose.yml").read_text().split("\nname:", 1)[0]
    assert _commands(section) == _commands(header)
    assert _commands(section) == [
        "cp docker/.env.example docker/.env",
        "docker compose -f docker/docker-compose.yml up -d --build",
    ]


def test_licence_file_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


async def test_creation_and_resolution_are_logged_with_who_resolved(
    make_settings, start_service, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homealert_mqtt")
    await start_service(make_settings())
    await probe.alert(source="basement", type="water_leak", severity="critical", message="Wet")
    await probe.alert(source="nas", type="disk_space", severity="low", message="Full")
    created = await probe.wait_events("created", 2)
    ids = {e["source"]: e["id"] for e in created}
    # One acknowledged by anna, then resolved by bob: the log must name bob, not anna.
    await probe.publish(f"{probe.base}/alert/{ids['basement']}/ack", b"anna")
    await probe.state(ids["basement"], lambda s: s["state"] == "acknowledged")
    await probe.publish(f"{probe.base}/alert/{ids['basement']}/resolve", b"bob")
    await probe.state(ids["basement"], lambda s: s["state"] == "resolved")
    await probe.alert(source="nas", type="disk_space", severity="low", status="resolved")
    await probe.state(ids["nas"], lambda s: s["state"] == "resolved")

    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(
        line.startswith(f"alert {ids['basement']} created: P1 water_leak from basement")
        for line in lines
    ), lines
    assert any(line.startswith(f"alert {ids['nas']} created: P4") for line in lines), lines
    assert f"alert {ids['basement']} resolved by bob (rule T4)" in lines, lines
    assert any(line.startswith(f"alert {ids['nas']} resolved by nas") for line in lines), lines


# -- point 13: the tour notifies someone; placeholders are named ------------------------

ALL_ON = {"channels": {name: {"enabled": True} for name in QUIET_CHANNELS}}


async def test_the_tour_notifies_oncall_over_mqtt_without_credentials(
    make_settings, start_service, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homealert_mqtt")
    await start_service(make_settings(ALL_ON))  # every channel as shipped
    await probe.alert(source="basement", type="water_leak", severity="critical", message="Wet")
    note = await probe.wait_for(f"{probe.base}/notify/oncall")
    assert note.json()["priority"] == "P1"
    assert "Wet" in note.json()["text"]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "email is disabled: channels.email.password is still the example value "
        "'your_password'" in line
        for line in warnings
    ), warnings
    assert any(
        line.startswith(
            "notifications go out on mqtt only; email, slack, sms, phone will send nothing"
        )
        for line in warnings
    ), warnings


async def test_check_config_names_the_channels_placeholders_disable(tmp_path: Path) -> None:
    config = tmp_path / "homealert.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "channels": {
                    "email": {"password": "xxx"},
                    "sms": {"account_sid": "AC-real-sid", "auth_token": "s3cret-token-9"},
                    "phone": {"enabled": False},
                }
            }
        )
    )
    result = await cli("check-config", "--config", str(config))
    assert result.code == 0, result.text
    lines = result.out.splitlines()
    assert lines[1] == "channels that will send nothing:"
    assert lines[2].startswith("  email: channels.email.password is still the example value 'xxx'")
    assert lines[3].startswith(
        "  slack: channels.slack.webhook_url is still the example value "
        "'https://hooks.slack.com/services/xxx'"
    )
    assert lines[4] == "  phone: enabled: false"
    assert (
        lines[5] == "notifications go out on sms, mqtt only; email, slack, phone will send nothing"
    )
    assert "s3cret-token-9" not in result.text
    assert "AC-real-sid" not in result.text


# -- points 9 and 10: one run per data directory; ports as the servers bind them -------


def test_a_port_in_time_wait_counts_as_free() -> None:
    """The last run's connections linger in TIME_WAIT; Redis and Mosquitto bind with
    SO_REUSEADDR and get the port, so the check must not call it busy."""
    port = free_port()
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(1)
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the side that closes first keeps TIME_WAIT: the server's, as on restart
        assert client.recv(1) == b""
        client.close()
        assert port_or_free(port) != port  # still listening: busy
    assert port_or_free(port) == port
    with socket.socket() as listener:  # a listener, even one using SO_REUSEADDR: busy
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        assert port_or_free(port) != port


@pytest.mark.slow
async def test_one_embedded_run_per_data_dir_and_the_cli_finds_its_ports(tmp_path: Path) -> None:
    state = tmp_path / "state"
    data = state / "homealert-mqtt" / "embedded"  # the default, under XDG_STATE_HOME
    env = subprocess_env(XDG_STATE_HOME=str(state))
    config = tmp_path / "quiet.yaml"
    config.write_text(
        yaml.safe_dump({"channels": QUIET_CHANNELS, "homeassistant": {"discovery": False}})
    )
    # Random ports: the CLI can only find them by asking the data directory.
    args = ["run", "--embedded", "--config", str(config), "--mqtt-port", "0", "--redis-port", "0"]
    with service_process(args, tmp_path / "first.log", env) as first:
        await eventually(lambda: "is running on an embedded" in first.log(), timeout=30)
        assert first.process is not None
        with service_process(args, tmp_path / "second.log", env) as second:
            assert second.wait(30) == 1, second.log()
        refused = second.log()
        assert f"the data directory {data} is in use" in refused, refused
        assert f"(PID {first.process.pid})" in refused
        assert "--data-dir" in refused
        assert "Traceback" not in refused
        own = [*args, "--data-dir", str(tmp_path / "own")]  # asked for: a directory of its own
        with service_process(own, tmp_path / "own.log", env) as third:
            await eventually(lambda: "is running on an embedded" in third.log(), timeout=30)
            assert running_endpoints(tmp_path / "own") != running_endpoints(data)

        ends = running_endpoints(data)
        assert ends is not None
        async with Probe(ends.mqtt_port, "homealert") as probe:
            await probe.wait_for("homealert/status", lambda s: s.payload == b"online", timeout=20)
            await probe.alert(source="basement", type="water_leak", severity="critical")
            [created] = await probe.wait_events("created", 1)
        # No --config, no HOMEALERT_*_URL: the CLI reads the ports from the data directory.
        listed = await cli("alerts", "--json", XDG_STATE_HOME=str(state))
        assert listed.code == 0, listed.text
        assert [a["id"] for a in json.loads(listed.out)] == [created["id"]]
        explicit = await cli("alerts", "--json", "--data-dir", str(data), "--config", str(config))
        assert [a["id"] for a in json.loads(explicit.out)] == [created["id"]], explicit.text
    assert running_endpoints(data) is None  # ended: the lock went with the process


# -- point 12: the CLI waits for the service's answer -----------------------------------


async def test_cli_ack_and_resolve_print_the_service_answer(
    tmp_path: Path, make_settings, start_service, probe: Probe
) -> None:
    make_settings()
    config = str(tmp_path / "config.yaml")
    nobody = await cli("ack", "basement-water_leak-0000", "--timeout", "0.5", "--config", config)
    assert nobody.code == 1, nobody.text
    assert nobody.out.startswith("no answer from the service within 0.5 s"), nobody.out

    await start_service(make_settings())
    await probe.alert(source="basement", type="water_leak", severity="critical")
    [created] = await probe.wait_events("created", 1)
    alert_id = created["id"]

    unknown = await cli("ack", "basement-water_leak-nope", "--config", config)
    assert (unknown.code, unknown.out) == (1, "ack failed: no alert 'basement-water_leak-nope'\n")
    ack = await cli("ack", alert_id, "--by", "anna", "--config", config)
    assert (ack.code, ack.out) == (0, f"{alert_id} acknowledged (state acknowledged)\n"), ack.text
    again = await cli("ack", alert_id, "--by", "anna", "--config", config)
    assert (again.code, again.out) == (0, f"{alert_id} was already acknowledged; nothing changed\n")
    resolve = await cli("resolve", alert_id, "--config", config)
    assert (resolve.code, resolve.out) == (0, f"{alert_id} resolved (state resolved)\n")
    late = await cli("resolve", alert_id, "--config", config)
    assert late.code == 1
    assert (
        late.out
        == f"resolve failed: alert {alert_id!r} is already resolved; resolve changes nothing\n"
    )


async def test_a_command_with_a_request_id_is_answered_on_its_response_topic(
    make_settings, start_service, probe: Probe
) -> None:
    await start_service(make_settings())
    base = probe.base
    await probe.alert(source="nas", type="disk_space", severity="low")
    await probe.alert(source="nas", type="fan", severity="low")  # another group
    created = await probe.wait_events("created", 2)
    ids = sorted(e["id"] for e in created)

    await probe.publish(f"{base}/alert/{ids[0]}/ack", {"by": "anna", "request_id": "r-1"})
    answer = (await probe.wait_for(f"{base}/response/r-1")).json()
    assert answer == {
        "request_id": "r-1",
        "command": "ack",
        "target": ids[0],
        "ok": True,
        "outcome": "acknowledged",
        "state": "acknowledged",
        "alert_ids": [ids[0]],
        "error": None,
    }
    await probe.publish(f"{base}/alert/nothing-here/resolve", {"request_id": "r-2"})
    refused = (await probe.wait_for(f"{base}/response/r-2")).json()
    assert (refused["ok"], refused["error"]) == (False, "no alert 'nothing-here'")
    assert any(e["error"] == "no alert 'nothing-here'" for e in probe.errors())  # as before

    await probe.publish(f"{base}/ack_all", {"request_id": "r-3"})
    everything = (await probe.wait_for(f"{base}/response/r-3")).json()
    assert (everything["ok"], everything["alert_ids"]) == (True, [ids[1]])
    assert not (await probe.wait_for(f"{base}/response/r-3")).retain

    await probe.publish(f"{base}/ack_all", {"request_id": "a/b"})
    await probe.wait_for(f"{base}/error", lambda s: "request_id must be" in s.json()["error"])
