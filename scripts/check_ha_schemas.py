"""Validate our discovery configs with Home Assistant's own code.

Not part of the test run: it needs the `homeassistant` package, which wants a newer
Python than the project and hundreds of dependencies. Run it in a venv of its own:

    ~/.pyenv/versions/3.13.0/bin/python3 -m venv /tmp/ha-venv
    /tmp/ha-venv/bin/pip install homeassistant==2025.4.4
    /tmp/ha-venv/bin/python scripts/check_ha_schemas.py

What it checks, the way HA's MQTT discovery processes a message
(homeassistant/components/mqtt/discovery.py):

- the device-based message against `DEVICE_DISCOVERY_SCHEMA`, then each component,
  with the shared options merged in, against its platform's `DISCOVERY_SCHEMA`;
- each single-component message against its platform's `DISCOVERY_SCHEMA` and the
  origin against `MQTT_ORIGIN_INFO_SCHEMA`;
- that HA's schemas drop none of our keys (a dropped key is a silent typo), except
  those known to be newer than the installed HA (`default_entity_id`);
- every template, rendered by HA's template engine against sample payloads.

Exit status 0 when all is well, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import homeassistant.const
import voluptuous as vol
from homeassistant.components.mqtt.models import MqttValueTemplate
from homeassistant.components.mqtt.schemas import (
    DEVICE_DISCOVERY_SCHEMA,
    MQTT_ORIGIN_INFO_SCHEMA,
    SHARED_OPTIONS,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import frame
from homeassistant.helpers.template import Template

# The project is not installed in HA's venv: import it from the work tree.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homealert_mqtt.homeassistant.discovery import (
    DiscoveryMessage,
    DiscoverySettings,
    alert_messages,
    parse_config_topic,
    service_messages,
)

# Keys HA 2025.4 does not know yet (2025.10 added default_entity_id).
NEWER_THAN_INSTALLED = {"default_entity_id"}

SAMPLE_SUMMARY = {
    "active": 2,
    "acknowledged": 1,
    "escalated": 1,
    "by_priority": {"P1": 0, "P2": 1, "P3": 2, "P4": 0, "P5": 0},
    "highest_priority": "P2",
    "alerts": ["a1", "a2", "a3"],
    "open_alerts": [
        {
            "id": "a1",
            "name": "Garage door open",
            "priority": "P2",
            "state": "escalated",
            "source": "garage",
            "type": "door_open",
            "message": "Garage | door\nopen",
            "first_seen": "2026-12-03T16:00:00.000Z",
            "age": 4000,
        }
    ],
}
EMPTY_SUMMARY = {
    "active": 0,
    "acknowledged": 0,
    "escalated": 0,
    "by_priority": {"P1": 0, "P2": 0, "P3": 0, "P4": 0, "P5": 0},
    "highest_priority": None,
    "alerts": [],
}
SAMPLE_ALERT = {
    "id": "a1",
    "state": "escalated",
    "priority": "P2",
    "severity": "high",
    "source": "garage",
    "type": "door_open",
    "message": "Garage door open",
    "attributes": {},
    "count": 3,
}
SAMPLE_DIAGNOSTICS = {
    "version": "0.1.0",
    "redis": "connected",
    "last_error": {"error": "payload is not JSON", "at": "2026-12-03T16:00:00.000Z"},
}
# (template key, payload) -> expected rendering
SAMPLE_PRESENCE = {
    "nas": {"name": "nas", "state": "offline", "kind": "device"},
    "plug": {"name": "plug", "state": "ok", "kind": "device"},
    "backup": {"name": "backup", "state": "late", "kind": "heartbeat"},
}
EXPECTED = {
    ("presence", json.dumps(SAMPLE_PRESENCE)): "2",
    ("presence", json.dumps({})): "0",
    ("open_alerts", json.dumps(SAMPLE_SUMMARY)): "3",
    ("open_alerts", json.dumps(EMPTY_SUMMARY)): "0",
    ("active_alerts", json.dumps(SAMPLE_SUMMARY)): "2",
    ("highest_priority", json.dumps(SAMPLE_SUMMARY)): "P2",
    ("highest_priority", json.dumps(EMPTY_SUMMARY)): "none",
    ("problem", json.dumps(SAMPLE_SUMMARY)): "ON",
    ("problem", json.dumps(EMPTY_SUMMARY)): "OFF",
    ("needs_attention", json.dumps(SAMPLE_SUMMARY)): "ON",
    ("needs_attention", json.dumps(EMPTY_SUMMARY)): "OFF",
    ("redis", json.dumps(SAMPLE_DIAGNOSTICS)): "ON",
    ("version", json.dumps(SAMPLE_DIAGNOSTICS)): "0.1.0",
    ("last_error", json.dumps(SAMPLE_DIAGNOSTICS)): "payload is not JSON",
    ("last_error", json.dumps({**SAMPLE_DIAGNOSTICS, "last_error": None})): "none",
    ("alert", json.dumps(SAMPLE_ALERT)): "ON",
    ("alert", json.dumps({**SAMPLE_ALERT, "state": "acknowledged"})): "OFF",
    ("alert", json.dumps({**SAMPLE_ALERT, "state": "resolved"})): "OFF",
    ("alert", ""): "",
}


def _platform_schema(component: str) -> Any:
    module = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    return module.DISCOVERY_SCHEMA


def _dropped(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return set(before) - set(after) - NEWER_THAN_INSTALLED


def check_component(where: str, component: str, config: dict[str, Any]) -> list[str]:
    problems = []
    try:
        validated = _platform_schema(component)(dict(config))
    except vol.Invalid as err:  # report every failure, keep going
        return [f"{where}: rejected by {component} DISCOVERY_SCHEMA: {err}"]
    if dropped := _dropped(config, validated):
        problems.append(f"{where}: keys dropped by HA (typo?): {sorted(dropped)}")
    if "unique_id" not in validated:
        problems.append(f"{where}: no unique_id")
    if "origin" in config:
        MQTT_ORIGIN_INFO_SCHEMA(config["origin"])
    return problems


def check_device_message(message: DiscoveryMessage) -> list[str]:
    assert message.payload is not None
    payload = json.loads(message.encode())
    try:
        DEVICE_DISCOVERY_SCHEMA(payload)
    except vol.Invalid as err:
        return [f"{message.topic}: rejected by DEVICE_DISCOVERY_SCHEMA: {err}"]
    problems = []
    for comp_id, comp in payload["components"].items():
        config = dict(comp)
        component = config.pop("platform")
        # What discovery.py does: device and origin in, shared options inherited.
        config["device"] = payload["device"]
        config["origin"] = payload["origin"]
        for option in SHARED_OPTIONS:
            if option in payload and option not in config:
                config[option] = payload[option]
        problems += check_component(f"{message.topic}#{comp_id}", component, config)
    return problems


def check_templates(hass: Any, settings: DiscoverySettings) -> list[str]:
    problems = []
    service = service_messages(settings)[0].payload
    assert service is not None
    alert = alert_messages(settings, SAMPLE_ALERT)[0].payload
    assert alert is not None
    templates = {key: comp.get("value_template") for key, comp in service["components"].items()}
    templates["alert"] = alert["value_template"]
    for (key, payload), expected in EXPECTED.items():
        tpl = MqttValueTemplate(Template(templates[key], hass))
        got = str(tpl.async_render_with_possible_json_value(payload))
        if got.strip() != expected:
            problems.append(f"template {key} on {payload[:40]!r}: got {got!r}, want {expected!r}")
    attrs = MqttValueTemplate(Template(alert["json_attributes_template"], hass))
    rendered = json.loads(
        str(attrs.async_render_with_possible_json_value(json.dumps(SAMPLE_ALERT)))
    )
    if rendered.get("alert_state") != "escalated" or rendered.get("id") != "a1":
        problems.append(f"json_attributes_template gave {rendered!r}")
    empty = str(attrs.async_render_with_possible_json_value(""))
    if json.loads(empty) != {}:
        problems.append(f"json_attributes_template on empty payload gave {empty!r}")
    table_template = service["components"]["open_alerts"]["json_attributes_template"]
    summary_attrs = MqttValueTemplate(Template(table_template, hass))
    table = json.loads(
        str(summary_attrs.async_render_with_possible_json_value(json.dumps(SAMPLE_SUMMARY)))
    ).get("table", "")
    row = "| P2 | Garage door open | escalated | Garage / door open | 1 h |"
    if row not in table.splitlines():
        problems.append(f"open alerts table: {table!r}")
    return problems


async def check_all(config_dir: str) -> list[str]:
    # cv.template and the template engine want a running hass and its frame helper.
    hass = HomeAssistant(config_dir)
    frame.async_setup(hass)
    settings = DiscoverySettings(base_topic="homealert", sw_version="0.1.0")
    problems: list[str] = []
    for message in service_messages(settings):
        problems += check_device_message(message)
    for message in alert_messages(settings, SAMPLE_ALERT):
        parsed = parse_config_topic(message.topic)
        assert parsed is not None
        problems += check_component(message.topic, parsed[0], json.loads(message.encode()))
    problems += check_templates(hass, settings)
    # The check itself must catch a typo, or an OK above proves nothing.
    typo = json.loads(alert_messages(settings, SAMPLE_ALERT)[0].encode())
    typo["json_atributes_topic"] = typo.pop("json_attributes_topic")
    if not check_component("self-test", "binary_sensor", typo):
        problems.append("self-test: a misspelt key went unnoticed")
    await hass.async_stop(force=True)
    return problems


def main() -> int:
    with tempfile.TemporaryDirectory() as config_dir:
        problems = asyncio.run(check_all(config_dir))
    for line in problems:
        print(f"PROBLEM: {line}")
    print(
        f"checked against homeassistant {homeassistant.const.__version__}: "
        f"{'OK' if not problems else f'{len(problems)} problems'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
