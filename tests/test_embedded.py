"""`homealert-mqtt run --embedded`: its own Redis and broker as children, for trying it out.

Run as a real process: publish an alert, see its retained state, acknowledge it with the
CLI, then SIGTERM: the children are gone and `offline` is retained. Once with Mosquitto,
once with the iotcore fallback (HOMEALERT_EMBEDDED_BROKER=iotcore).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import aiomqtt
import pytest
import yaml

from homealert_mqtt.embedded import free_port
from tests.conftest import QUIET_CHANNELS
from tests.probe import Probe
from tests.servers import MosquittoServer
from tests.test_cli import cli
from tests.waits import eventually, service_process, subprocess_env

pytestmark = pytest.mark.slow

BASE = "homealert"  # the defaults: this is what a first-time user gets


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("broker", ["mosquitto", "iotcore"])
async def test_embedded_servers_end_to_end(tmp_path: Path, broker: str) -> None:
    data = tmp_path / "data"
    mqtt_port, redis_port = free_port(), free_port()
    config = tmp_path / "quiet.yaml"  # no mail, Slack or SMS to the outside world
    config.write_text(
        yaml.safe_dump({"channels": QUIET_CHANNELS, "homeassistant": {"discovery": False}})
    )
    args = ["run", "--embedded", "--data-dir", str(data), "--config", str(config)]
    args += ["--mqtt-port", str(mqtt_port), "--redis-port", str(redis_port)]
    env = subprocess_env(HOMEALERT_EMBEDDED_BROKER=broker)
    protocol = aiomqtt.ProtocolVersion.V5 if broker == "mosquitto" else aiomqtt.ProtocolVersion.V311
    with service_process(args, tmp_path / "embedded.log", env) as service:
        await eventually(lambda: "is running on an embedded" in service.log(), timeout=30)
        tour = service.log()
        assert f"broker (127.0.0.1:{mqtt_port})" in tour
        assert f"Redis\n(127.0.0.1:{redis_port})" in tour
        assert service.process is not None
        children = children_of(service.process.pid)
        commands = [cmdline(c) for c in children]
        assert any("redis-server" in c for c in commands), commands
        assert any(("mosquitto" if broker == "mosquitto" else "iotcore") in c for c in commands)

        async with Probe(mqtt_port, BASE, protocol) as probe:
            await probe.wait_for(f"{BASE}/status", lambda s: s.payload == b"online", timeout=20)
            await probe.alert(source="basement", type="water_leak", severity="critical")
            created = await probe.wait_for(
                f"{BASE}/event", lambda s: s.json()["event"] == "created"
            )
            alert_id = created.json()["id"]
            await probe.state(alert_id, lambda s: s["priority"] == "P1")
            async with Probe(mqtt_port, BASE, protocol) as late:  # subscribed afterwards
                state = await late.wait_for(f"{BASE}/alert/{alert_id}")
                assert state.retain
                assert json.loads(state.payload)["source"] == "basement"

            urls = {
                "HOMEALERT_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
                "HOMEALERT_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            }
            ack = await cli("ack", alert_id, "--by", "anna", "--config", str(config), **urls)
            assert ack.code == 0, ack.text
            acked = await probe.state(alert_id, lambda s: s["state"] == "acknowledged")
            assert acked["acknowledged_by"] == "anna"
            listed = await cli("alerts", "--json", "--config", str(config), **urls)
            assert [a["id"] for a in json.loads(listed.out)] == [alert_id]

            mark = len(probe.seen)
            service.signal(signal.SIGTERM)
            assert service.wait(20) == 0, service.log()
            offline = await probe.wait_for(
                f"{BASE}/status", lambda s: s.payload == b"offline", after=mark
            )
            assert offline.payload == b"offline"
        for child in children:
            assert not alive(child), f"child {child} outlived the service"
        assert "Traceback" not in service.log()

    if broker == "mosquitto":
        # What the embedded broker kept on disk: `offline`, retained.
        kept = MosquittoServer(data / "mosquitto").start()
        try:
            async with Probe(kept.port, BASE) as probe:
                status = await probe.wait_for(f"{BASE}/status")
                assert (status.payload, status.retain) == (b"offline", True)
                await probe.wait_for(f"{BASE}/alert/{alert_id}", lambda s: s.retain)
        finally:
            kept.stop()


async def test_unknown_embedded_broker_is_an_error(tmp_path: Path) -> None:
    env = subprocess_env(HOMEALERT_EMBEDDED_BROKER="nanomq")
    args = ["run", "--embedded", "--data-dir", str(tmp_path), "--mqtt-port", "0"]
    with service_process(args, tmp_path / "log", env) as service:
        assert service.wait(30) == 1
        assert "HOMEALERT_EMBEDDED_BROKER must be mosquitto or iotcore" in service.log()
        assert "Traceback" not in service.log()
