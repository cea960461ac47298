"""Against a real Home Assistant (opt-in): what its registries hold, not only topics.

Skipped unless HOMEALERT_HA_CHECK=1 and a venv with Home Assistant exists
(HOMEALERT_HA_PYTHON, default /tmp/ha-venv/bin/python; scripts/ha_sandbox.py says how
to make it). Home Assistant runs as a process of its own on 127.0.0.1 with the MQTT
integration set up through its config flow against the test Mosquitto; the service
runs in-process as in the other tests. Each Home Assistant start takes a few seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from homealert_mqtt.config import Settings
from homealert_mqtt.homeassistant.discovery import object_id_slug
from homealert_mqtt.models import State
from tests.homeassistant.test_service_e2e import empty, new_alert
from tests.probe import Probe
from tests.servers import MosquittoServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

StartService = Callable[..., Any]
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _sandbox() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ha_sandbox", SCRIPTS / "ha_sandbox.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ha_sandbox"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def home_assistant(tmp_path: Path, mqtt_broker: MosquittoServer) -> AsyncIterator[Any]:
    if os.environ.get("HOMEALERT_HA_CHECK") != "1":
        pytest.skip("real Home Assistant not run: set HOMEALERT_HA_CHECK=1 (scripts/ha_sandbox.py)")
    sandbox = _sandbox()
    if not await asyncio.to_thread(Path(sandbox.ha_python()).exists):
        pytest.fail(f"HOMEALERT_HA_CHECK=1 but {sandbox.ha_python()} does not exist")
    ha = sandbox.HomeAssistant(tmp_path / "ha")
    # Blocking HTTP and process calls: in a thread, so that the service keeps running.
    await asyncio.to_thread(ha.start)
    await asyncio.to_thread(ha.onboard)
    await asyncio.to_thread(ha.wait_running)
    await asyncio.to_thread(ha.add_mqtt, "127.0.0.1", mqtt_broker.port)
    try:
        yield ha
    finally:
        await asyncio.to_thread(ha.stop)


async def _entity(
    ha: Any, entity_id: str, present: bool = True, state: str | None = None
) -> dict[str, Any] | None:
    """Wait until HA has (in `state`, if given) or no longer has `entity_id`."""

    def check() -> dict[str, Any] | bool | None:
        found = ha.states().get(entity_id)
        if not present:
            return found is None
        return found if found and state in (None, found["state"]) else None

    found = await asyncio.to_thread(ha.wait_for, f"{entity_id} present={present}", check)
    return found if present else None


async def test_entity_of_an_alert_gone_while_ha_was_down_leaves_its_registry(
    home_assistant: Any,
    start_service: StartService,
    make_settings: Callable[..., Settings],
    probe: Probe,
) -> None:
    ha = home_assistant
    settings = make_settings(
        {
            "homeassistant": {"discovery": True, "discovery_prefix": "homeassistant"},
            "alerts": {"retention": {"resolved": 1}},
        }
    )
    assert probe._client is not None
    await probe._client.subscribe("homeassistant/status", qos=1)
    await start_service(settings)
    alert_id = await new_alert(probe, source="basement", type="water_leak", severity="critical")
    node = settings.mqtt.base_topic
    sensor_id = f"binary_sensor.{object_id_slug(f'{node}_alert_{alert_id}')}"
    resolve_id = f"button.{object_id_slug(f'{node}_alert_{alert_id}_resolve')}"
    sensor = await _entity(ha, sensor_id, state="on")
    assert sensor is not None
    # point 6: the names people read, no id and no hash in them
    assert sensor["attributes"]["friendly_name"] == "Basement water leak"
    resolve = await _entity(ha, resolve_id)
    assert resolve is not None
    assert resolve["attributes"]["friendly_name"] == "Basement water leak Resolve"
    # point 3 and 5: the service device's sensors, as HA shows them
    for entity_id, state in [
        (f"binary_sensor.{node}_needs_attention", "on"),
        (f"binary_sensor.{node}_broker", "on"),
        (f"binary_sensor.{node}_redis", "on"),
        (f"sensor.{node}_open_alerts", "1"),
    ]:
        await _entity(ha, entity_id, state=state)

    # point 4: another alert, resolved with its Resolve button in HA; HA is up when
    # its retention ends, so its entities go at once.
    other = await new_alert(probe, source="garage", type="door_open", severity="medium")
    other_resolve = f"button.{object_id_slug(f'{node}_alert_{other}_resolve')}"
    await _entity(ha, other_resolve, state="unknown")  # a button never pressed
    await asyncio.to_thread(
        ha.request, "POST", "/api/services/button/press", {"entity_id": other_resolve}
    )
    resolved = await probe.state(other, lambda s: s["state"] == State.RESOLVED)
    assert resolved["resolved_by"] == "home_assistant"
    await _entity(ha, other_resolve, present=False)

    # Home Assistant goes down; meanwhile the alert is resolved and its retention ends.
    await asyncio.to_thread(ha.stop)
    await probe.wait_for("homeassistant/status", lambda s: s.payload == b"offline")
    await probe.publish(f"{probe.base}/alert/{alert_id}/resolve", b"")
    await probe.state(alert_id, lambda s: s["state"] == State.RESOLVED)
    await probe.wait_for(f"{probe.base}/alert/{alert_id}", empty, timeout=15)
    entities = {e["entity_id"] for e in ha.registry("entity_registry")}
    assert sensor_id in entities  # what HA keeps while it is down

    # HA comes back: without the service's help the entity would stay `unavailable`.
    mark = len(probe.seen)
    await asyncio.to_thread(ha.start)
    await probe.wait_for("homeassistant/status", lambda s: s.payload == b"online", 60, mark)
    await _entity(ha, sensor_id, present=False)
    await _entity(ha, resolve_id, present=False)
    await asyncio.to_thread(ha.stop)
    entities = {e["entity_id"] for e in ha.registry("entity_registry")}
    assert not {sensor_id, resolve_id} & entities
    devices = [d["name"] for d in ha.registry("device_registry")]
    assert "Basement water leak" not in devices
    assert f"HomeAlert {node}" in devices  # the service's own device stays
