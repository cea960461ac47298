"""Every discovery message against the schema Home Assistant documents.

HA drops unknown keys without a word, so a misspelt key is a silent bug: the tables
below list what HA accepts per component, and any other key fails the test.

Sources (HA 2025.4, plus `default_entity_id` from 2025.10):
- home-assistant.io source/_integrations/mqtt.markdown: discovery topic, device-based
  discovery (`components`, `platform`, shared options), device / origin /
  availability blocks;
- source/_integrations/{binary_sensor,sensor,button,event}.mqtt.markdown: the keys of
  each platform;
- HA core homeassistant/components/mqtt/schemas.py (MQTT_ENTITY_COMMON_SCHEMA,
  MQTT_ENTITY_DEVICE_INFO_SCHEMA, MQTT_ORIGIN_INFO_SCHEMA, DEVICE_DISCOVERY_SCHEMA),
  config.py (MQTT_BASE_SCHEMA, MQTT_RO_SCHEMA) and the platform modules'
  PLATFORM_SCHEMA_MODERN.

scripts/check_ha_schemas.py runs the same configs through HA's own code; the last
test here calls it when HOMEALERT_HA_CHECK=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from homealert_mqtt.homeassistant.discovery import (
    HA_EVENT_TYPES,
    DiscoveryMessage,
    DiscoverySettings,
    alert_config_topics,
    alert_id_of_config,
    alert_messages,
    ha_event_payload,
    node_id_for,
    parse_config_topic,
    remove_alert,
    service_messages,
    silence_messages,
)

# -- what HA accepts -----------------------------------------------------------------

AVAILABILITY_KEYS = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
}
# MQTT_ENTITY_COMMON_SCHEMA + MQTT_BASE_SCHEMA (qos, encoding)
COMMON_ENTITY_KEYS = AVAILABILITY_KEYS | {
    "device",
    "entity_picture",
    "origin",
    "enabled_by_default",
    "entity_category",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "object_id",
    "default_entity_id",  # HA >= 2025.10, replaces object_id
    "unique_id",
    "qos",
    "encoding",
}
ALLOWED_KEYS: dict[str, set[str]] = {
    "binary_sensor": COMMON_ENTITY_KEYS
    | {
        "state_topic",
        "value_template",
        "device_class",
        "expire_after",
        "force_update",
        "name",
        "off_delay",
        "payload_off",
        "payload_on",
    },
    "sensor": COMMON_ENTITY_KEYS
    | {
        "state_topic",
        "value_template",
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "name",
        "options",
        "suggested_display_precision",
        "state_class",
        "unit_of_measurement",
    },
    "button": COMMON_ENTITY_KEYS
    | {"command_template", "command_topic", "device_class", "name", "payload_press", "retain"},
    "event": COMMON_ENTITY_KEYS
    | {"state_topic", "value_template", "device_class", "name", "event_types"},
}
# `unique_id` is optional for HA but required here: without it the device is ignored.
REQUIRED_KEYS: dict[str, set[str]] = {
    "binary_sensor": {"state_topic", "unique_id", "name"},
    "sensor": {"state_topic", "unique_id", "name"},
    "button": {"command_topic", "unique_id", "name"},
    "event": {"state_topic", "event_types", "unique_id", "name"},
}
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "hw_version",
    "serial_number",
    "sw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_ITEM_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
# DEVICE_DISCOVERY_SCHEMA: availability options, device, components, origin and the
# shared state_topic / command_topic / qos / encoding.
DEVICE_MESSAGE_KEYS = AVAILABILITY_KEYS | {
    "device",
    "components",
    "origin",
    "state_topic",
    "command_topic",
    "qos",
    "encoding",
}
DEVICE_MESSAGE_REQUIRED = {"device", "components", "origin"}
# device-based options a component inherits (schemas.py SHARED_OPTIONS)
SHARED_OPTIONS = AVAILABILITY_KEYS | {"command_topic", "state_topic"}

BASE = "homealert"
SETTINGS = DiscoverySettings(base_topic=BASE, sw_version="1.2.3")
ALERTS = [
    {"id": "a1", "state": "new", "source": "garage", "type": "door_open", "priority": "P2"},
    {"id": "b-2_x", "state": "acknowledged", "source": "cellar", "type": "leak"},
]


def _components(message: DiscoveryMessage) -> list[tuple[str, dict[str, Any]]]:
    """(component, config as HA sees it) for every entity in a message."""
    assert message.payload is not None
    parsed = parse_config_topic(message.topic)
    assert parsed is not None, message.topic
    payload = json.loads(message.encode())
    if parsed[0] != "device":
        return [(parsed[0], payload)]
    # Device-based: HA merges device, origin and the shared options into each one.
    found = []
    for comp in payload["components"].values():
        config = dict(comp)
        component = config.pop("platform")
        config["device"] = payload["device"]
        config["origin"] = payload["origin"]
        for option in SHARED_OPTIONS & payload.keys():
            config.setdefault(option, payload[option])
        found.append((component, config))
    return found


def _all_messages() -> list[DiscoveryMessage]:
    messages = service_messages(SETTINGS)
    for alert in ALERTS:
        messages += alert_messages(SETTINGS, alert)
    return messages


def _all_entities() -> list[tuple[str, dict[str, Any]]]:
    return [entity for message in _all_messages() for entity in _components(message)]


# -- schema ----------------------------------------------------------------------------


@pytest.mark.parametrize("message", _all_messages(), ids=lambda m: m.topic)
def test_message_is_retained_json_on_a_valid_topic(message: DiscoveryMessage) -> None:
    assert message.retain
    parsed = parse_config_topic(message.topic)
    assert parsed is not None
    assert message.topic.startswith("homeassistant/")
    assert parsed[1] == node_id_for(BASE)
    assert isinstance(json.loads(message.encode()), dict)


def test_device_message_keys() -> None:
    (message,) = service_messages(SETTINGS)
    assert message.topic == f"homeassistant/device/{BASE}/service/config"
    payload = json.loads(message.encode())
    assert payload.keys() <= DEVICE_MESSAGE_KEYS
    assert payload.keys() >= DEVICE_MESSAGE_REQUIRED
    for comp_id, comp in payload["components"].items():
        assert comp["platform"] in ALLOWED_KEYS, comp_id
        assert "device" not in comp
        assert "origin" not in comp


@pytest.mark.parametrize(
    ("component", "config"),
    _all_entities(),
    ids=lambda v: v if isinstance(v, str) else v["unique_id"],
)
def test_entity_keys_are_documented(component: str, config: dict[str, Any]) -> None:
    unknown = config.keys() - ALLOWED_KEYS[component]
    assert not unknown, f"keys HA would drop: {sorted(unknown)}"
    missing = REQUIRED_KEYS[component] - config.keys()
    assert not missing
    assert config["default_entity_id"] == f"{component}.{config['object_id']}"
    # availability: the list form only, never mixed with availability_topic
    assert "availability_topic" not in config
    for item in config["availability"]:
        assert item.keys() <= AVAILABILITY_ITEM_KEYS
        assert item == {
            "topic": f"{BASE}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
        }


@pytest.mark.parametrize(("component", "config"), _all_entities(), ids=lambda v: str(v)[:40])
def test_device_and_origin_blocks(component: str, config: dict[str, Any]) -> None:
    device, origin = config["device"], config["origin"]
    assert device.keys() <= DEVICE_KEYS
    # HA wants the device name in every entity's device block.
    topic = config.get("state_topic") or config["command_topic"]
    if topic.startswith(f"{BASE}/alert/"):
        # an alert: a device of its own, reached through the service's device
        alert_id = topic.split("/")[2]
        assert device["identifiers"] == [f"homealert_{BASE}_alert_{alert_id}"]
        assert device["via_device"] == f"homealert_{BASE}"
        assert device["model"] == "Alert"
    else:
        assert device["identifiers"] == [f"homealert_{BASE}"]
        assert device["name"] == "HomeAlert"
        assert device["sw_version"] == "1.2.3"
    assert origin.keys() <= ORIGIN_KEYS
    assert origin["name"] == "homealert-mqtt"
    assert origin["sw_version"] == "1.2.3"


def test_optional_urls_only_when_configured() -> None:
    plain = json.loads(service_messages(SETTINGS)[0].encode())
    assert "configuration_url" not in plain["device"]
    assert "support_url" not in plain["origin"]
    settings = DiscoverySettings(
        configuration_url="http://127.0.0.1:9466/healthz", support_url="http://127.0.0.1/"
    )
    full = json.loads(service_messages(settings)[0].encode())
    assert full["device"]["configuration_url"] == "http://127.0.0.1:9466/healthz"
    assert full["origin"]["support_url"] == "http://127.0.0.1/"


# -- what the entities point at -------------------------------------------------------


def test_topics_are_the_contract_topics() -> None:
    alert_ids = [str(a["id"]) for a in ALERTS]
    state_topics = {
        f"{BASE}/summary",
        f"{BASE}/ha/event",
        f"{BASE}/status",
        f"{BASE}/diagnostics",
        f"{BASE}/presence",
    } | {f"{BASE}/alert/{i}" for i in alert_ids}
    command_topics = {f"{BASE}/ack_all"} | {
        f"{BASE}/alert/{i}/{verb}" for i in alert_ids for verb in ("ack", "resolve", "snooze")
    }
    for component, config in _all_entities():
        for key, value in config.items():
            if key in {"state_topic", "json_attributes_topic"}:
                assert value in state_topics, (component, key, value)
            elif key == "command_topic":
                assert value in command_topics, (component, key, value)
            else:
                assert not key.endswith("_topic"), key


def test_service_device_has_the_contract_entities() -> None:
    names = {
        (component, config["name"])
        for component, config in _components(service_messages(SETTINGS)[0])
    }
    assert names == {
        ("sensor", "Open alerts"),
        ("sensor", "Active alerts"),
        ("sensor", "Highest priority"),
        ("sensor", "Presence problems"),
        ("binary_sensor", "Problem"),
        ("binary_sensor", "Needs attention"),
        ("button", "Acknowledge all"),
        ("event", "Alert event"),
        ("binary_sensor", "Broker connection"),
        ("binary_sensor", "Redis connection"),
        ("sensor", "Version"),
        ("sensor", "Last error"),
    }


def test_diagnostic_entities() -> None:
    """Connections, version and last error sit in the device's Diagnostic section."""
    components = dict(service_messages(SETTINGS)[0].payload["components"])  # type: ignore[index]
    diagnostic = {k for k, c in components.items() if c.get("entity_category") == "diagnostic"}
    assert diagnostic == {"broker", "redis", "version", "last_error"}
    assert components["broker"]["device_class"] == "connectivity"
    assert components["redis"]["device_class"] == "connectivity"
    # The broker sensor says "disconnected" when the service is gone, not "unavailable".
    assert components["broker"]["availability"] == []
    diagnostics = {
        "version": "1.2.3",
        "redis": "connected",
        "last_error": {"error": "payload is not JSON", "at": "2026-12-03T16:00:00.000Z"},
    }
    down = {**diagnostics, "redis": "disconnected", "last_error": None}
    assert _render(components["redis"]["value_template"], json.dumps(diagnostics)) == "ON"
    assert _render(components["redis"]["value_template"], json.dumps(down)) == "OFF"
    assert _render(components["version"]["value_template"], json.dumps(down)) == "1.2.3"
    last_error = components["last_error"]
    assert _render(last_error["value_template"], json.dumps(diagnostics)) == "payload is not JSON"
    assert _render(last_error["value_template"], json.dumps(down)) == "none"
    long_error = {**diagnostics, "last_error": {"error": "x" * 600, "at": None}}
    assert len(_render(last_error["value_template"], json.dumps(long_error))) == 255
    attributes = json.loads(
        _render(last_error["json_attributes_template"], json.dumps(diagnostics))
    )
    assert attributes == diagnostics["last_error"]
    assert json.loads(_render(last_error["json_attributes_template"], json.dumps(down))) == {}


def test_buttons_send_who_pressed() -> None:
    for component, config in _all_entities():
        if component == "button":
            assert json.loads(config["payload_press"])["by"] == "home_assistant"
            assert config["qos"] == 1


def test_unique_ids_and_entity_ids_are_unique() -> None:
    entities = _all_entities()
    unique_ids = [config["unique_id"] for _, config in entities]
    entity_ids = [config["default_entity_id"] for _, config in entities]
    assert len(set(unique_ids)) == len(unique_ids)
    assert len(set(entity_ids)) == len(entity_ids)
    assert all(uid.startswith(f"homealert_{BASE}_") for uid in unique_ids)


@pytest.mark.parametrize("base", ["homealert", "home/alerts"])
def test_names_do_not_repeat_the_device_name(base: str) -> None:
    settings = DiscoverySettings(base_topic=base)
    messages = service_messages(settings) + alert_messages(settings, ALERTS[0])
    for message in messages:
        for _, config in _components(message):
            name = config["name"] or ""  # None: the device's name alone
            assert "homealert" not in name.lower()
            assert config["device"]["name"].lower() not in name.lower()


def _friendly_name(config: dict[str, Any]) -> str:
    """What HA shows: the device's name, then the entity's (has_entity_name)."""
    return " ".join(filter(None, [config["device"]["name"], config["name"]]))


def test_alert_entities() -> None:
    sensor, ack, resolve, snooze = alert_messages(SETTINGS, ALERTS[0])
    assert sensor.topic == f"homeassistant/binary_sensor/{BASE}/alert_a1/config"
    assert ack.topic == f"homeassistant/button/{BASE}/alert_a1/config"
    assert resolve.topic == f"homeassistant/button/{BASE}/alert_a1_resolve/config"
    assert sensor.payload is not None
    assert ack.payload is not None
    assert resolve.payload is not None
    assert sensor.payload["device_class"] == "problem"
    assert sensor.payload["unique_id"] == f"homealert_{BASE}_alert_a1"
    assert ack.payload["unique_id"] == f"homealert_{BASE}_alert_a1_ack"
    assert resolve.payload["unique_id"] == f"homealert_{BASE}_alert_a1_resolve"
    assert resolve.payload["command_topic"] == f"{BASE}/alert/a1/resolve"
    assert resolve.payload["default_entity_id"] == f"button.{BASE}_alert_a1_resolve"
    assert snooze.topic == f"homeassistant/button/{BASE}/alert_a1_snooze/config"
    assert snooze.payload is not None
    assert snooze.payload["command_topic"] == f"{BASE}/alert/a1/snooze"
    assert json.loads(snooze.payload["payload_press"]) == {"for": 3600, "by": "home_assistant"}
    assert snooze.payload["unique_id"] == f"homealert_{BASE}_alert_a1_snooze"
    assert [sensor.topic, ack.topic, resolve.topic, snooze.topic] == alert_config_topics(
        "homeassistant", BASE, "a1"
    )


@pytest.mark.parametrize(
    ("source", "alert_type", "name"),
    [
        ("basement", "water_leak", "Basement water leak"),
        ("garage", "door-open", "Garage door open"),
        ("nas.local", "disk_SMART", "Nas local disk SMART"),
        ("", "", "Alert"),
    ],
)
def test_alert_names_read_like_speech(source: str, alert_type: str, name: str) -> None:
    """The names HA shows: the alert, then what the button does; no id, no hash."""
    alert = {"id": "basement-water_leak-1a2b3c4d", "source": source, "type": alert_type}
    sensor, ack, resolve, snooze = (json.loads(m.encode()) for m in alert_messages(SETTINGS, alert))
    assert _friendly_name(sensor) == name
    assert _friendly_name(ack) == f"{name} Acknowledge"
    assert _friendly_name(resolve) == f"{name} Resolve"
    assert _friendly_name(snooze) == f"{name} Snooze 1 h"
    for config in (sensor, ack, resolve):
        assert "1a2b3c4d" not in _friendly_name(config)
        assert "1a2b3c4d" in config["default_entity_id"]  # the entity id may keep it


def test_remove_alert_is_empty_retained() -> None:
    removal = remove_alert(SETTINGS, "a1")
    assert [m.topic for m in removal] == alert_config_topics("homeassistant", BASE, "a1")
    for message in removal:
        assert message.payload is None
        assert message.retain
        assert message.encode() == b""


def test_custom_prefix_and_base() -> None:
    settings = DiscoverySettings(base_topic="house/alerts", prefix="ha")
    assert settings.node_id == "house_alerts"
    (service,) = service_messages(settings)
    assert service.topic == "ha/device/house_alerts/service/config"
    topics = [m.topic for m in alert_messages(settings, ALERTS[0])]
    assert topics == [
        "ha/binary_sensor/house_alerts/alert_a1/config",
        "ha/button/house_alerts/alert_a1/config",
        "ha/button/house_alerts/alert_a1_resolve/config",
        "ha/button/house_alerts/alert_a1_snooze/config",
    ]
    config = _components(alert_messages(settings, ALERTS[0])[0])[0][1]
    assert config["state_topic"] == "house/alerts/alert/a1"


# -- topics and ids --------------------------------------------------------------------


@pytest.mark.parametrize("alert_id", ["a1", "b-2_x", "basement-water_leak-1a2b3c4d-2"])
def test_alert_id_of_config(alert_id: str) -> None:
    for topic in alert_config_topics("homeassistant", BASE, alert_id):
        assert alert_id_of_config(topic, SETTINGS) == alert_id
    assert alert_id_of_config(service_messages(SETTINGS)[0].topic, SETTINGS) is None
    other_node = f"homeassistant/button/other/alert_{alert_id}/config"
    assert alert_id_of_config(other_node, SETTINGS) is None


@pytest.mark.parametrize(
    ("base", "node"),
    [
        ("homealert", "homealert"),
        ("home/alerts", "home_alerts"),
        ("/x y/", "x_y"),
        ("//", "homealert"),
    ],
)
def test_node_id_for(base: str, node: str) -> None:
    assert node_id_for(base) == node


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        (
            "homeassistant/binary_sensor/homealert/alert_a1/config",
            ("binary_sensor", "homealert", "alert_a1"),
        ),
        ("homeassistant/device/homealert/service/config", ("device", "homealert", "service")),
        ("my/prefix/button/n-1/alert_x/config", ("button", "n-1", "alert_x")),
        ("homeassistant/sensor/object/config", None),
        ("homeassistant/sensor/homealert/a b/config", None),
        ("homeassistant/sensor/homealert/x/state", None),
        ("homealert/alert/a1", None),
    ],
)
def test_parse_config_topic(topic: str, parsed: tuple[str, str, str] | None) -> None:
    assert parse_config_topic(topic) == parsed


# -- event entity ------------------------------------------------------------------------


def test_event_payload_matches_declared_types() -> None:
    (event,) = [c for comp, c in _components(service_messages(SETTINGS)[0]) if comp == "event"]
    assert event["event_types"] == list(HA_EVENT_TYPES)
    state = {"id": "a1", "priority": "P1", "source": "garage", "type": "door", "message": "m"}
    for name in HA_EVENT_TYPES:
        raw = ha_event_payload(name, state)
        assert raw is not None
        payload = json.loads(raw)
        assert payload["event_type"] == name
        assert payload["event_type"] in event["event_types"]
        assert payload["id"] == "a1"
        assert payload["priority"] == "P1"


@pytest.mark.parametrize("name", ["deduplicated", "grouped", "notified", "expired", "rejected", ""])
def test_other_events_are_not_forwarded(name: str) -> None:
    assert ha_event_payload(name, {"id": "a1"}) is None


# -- templates -----------------------------------------------------------------------------
# Rendered with plain Jinja as HA sets it up for MQTT (value, value_json when the payload
# is JSON, a json.dumps `tojson`); HA's own engine renders them in check_ha_schemas.py.

_JINJA = ImmutableSandboxedEnvironment()
_JINJA.filters["tojson"] = json.dumps


def _render(template: str, payload: str) -> str:
    variables: dict[str, Any] = {"value": payload}
    with contextlib.suppress(ValueError):
        variables["value_json"] = json.loads(payload)
    return _JINJA.from_string(template).render(variables).strip()


def _service_config(key: str) -> dict[str, Any]:
    payload = service_messages(SETTINGS)[0].payload
    assert payload is not None
    return dict(payload["components"][key])


SUMMARY = {
    "active": 2,
    "acknowledged": 1,
    "escalated": 0,
    "by_priority": {"P1": 0, "P2": 1, "P3": 2, "P4": 0, "P5": 0},
    "highest_priority": "P2",
    "alerts": ["a", "b", "c"],
}
QUIET = {**SUMMARY, "active": 0, "acknowledged": 0, "by_priority": {}, "highest_priority": None}


@pytest.mark.parametrize(
    ("key", "summary", "expected"),
    [
        ("open_alerts", SUMMARY, "3"),
        ("open_alerts", QUIET, "0"),
        ("active_alerts", SUMMARY, "2"),
        ("highest_priority", SUMMARY, "P2"),
        ("highest_priority", QUIET, "none"),
        ("problem", SUMMARY, "ON"),
        ("problem", {**SUMMARY, "by_priority": {"P1": 1}}, "ON"),
        ("problem", {**SUMMARY, "by_priority": {"P3": 4, "P5": 1}}, "OFF"),
        ("problem", QUIET, "OFF"),
        # open alerts nobody acknowledged; P1/P2 or not
        ("needs_attention", SUMMARY, "ON"),
        ("needs_attention", {**SUMMARY, "by_priority": {"P5": 3}}, "ON"),
        ("needs_attention", {**SUMMARY, "active": 0, "acknowledged": 3}, "OFF"),
        ("needs_attention", QUIET, "OFF"),
    ],
)
def test_summary_templates(key: str, summary: dict[str, Any], expected: str) -> None:
    config = _service_config(key)
    rendered = _render(config["value_template"], json.dumps(summary))
    assert rendered == expected
    if "options" in config:
        assert rendered in config["options"]


OPEN_ALERTS = [
    {
        "id": "basement-water_leak-1a2b3c4d",
        "name": "Basement water leak",
        "priority": "P1",
        "state": "escalated",
        "source": "basement",
        "type": "water_leak",
        "message": "Water | on the\nfloor",
        "first_seen": "2026-12-03T16:00:00.000Z",
        "age": 7260,
    },
    {
        "id": "garage-door_open-9f8e7d6c",
        "name": "Garage door open",
        "priority": "P3",
        "state": "acknowledged",
        "source": "garage",
        "type": "door_open",
        "message": "",
        "first_seen": "2026-12-03T18:00:00.000Z",
        "age": 59,
    },
]


def test_open_alerts_as_a_table() -> None:
    """A Markdown card shows `table` as it is: no template logic on the dashboard."""
    config = _service_config("open_alerts")
    summary = {**SUMMARY, "open_alerts": OPEN_ALERTS}
    attributes = json.loads(_render(config["json_attributes_template"], json.dumps(summary)))
    assert attributes["open_alerts"] == OPEN_ALERTS  # the summary's fields stay
    assert attributes["active"] == 2
    assert attributes["table"].splitlines() == [
        "| | Alert | State | Message | Age |",
        "|---|---|---|---|---|",
        "| P1 | Basement water leak | escalated | Water / on the floor | 2 h |",
        "| P3 | Garage door open | acknowledged |  | now |",
    ]
    quiet = json.loads(_render(config["json_attributes_template"], json.dumps(QUIET)))
    assert quiet["table"] == "No open alerts."


PRESENCE = {
    "nas": {"name": "nas", "state": "offline", "kind": "device"},
    "plug": {"name": "plug", "state": "ok", "kind": "device"},
    "backup": {"name": "backup", "state": "late", "kind": "heartbeat"},
}


def test_presence_sensor_counts_problems_and_lists_them() -> None:
    config = _service_config("presence")
    assert config["state_topic"] == f"{BASE}/presence"
    assert _render(config["value_template"], json.dumps(PRESENCE)) == "2"
    assert _render(config["value_template"], json.dumps({})) == "0"
    attributes = json.loads(_render(config["json_attributes_template"], json.dumps(PRESENCE)))
    assert attributes == {"offline": ["nas"], "late": ["backup"]}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("new", "ON"),
        ("active", "ON"),
        ("escalated", "ON"),
        ("acknowledged", "OFF"),
        ("resolved", "OFF"),
    ],
)
def test_alert_problem_template(state: str, expected: str) -> None:
    sensor = alert_messages(SETTINGS, ALERTS[0])[0].payload
    assert sensor is not None
    assert _render(sensor["value_template"], json.dumps({**ALERTS[0], "state": state})) == expected


def test_alert_templates_on_removed_state() -> None:
    # The retained state being cleared: nothing for HA to act on.
    sensor = alert_messages(SETTINGS, ALERTS[0])[0].payload
    assert sensor is not None
    assert _render(sensor["value_template"], "") == ""
    assert json.loads(_render(sensor["json_attributes_template"], "")) == {}


def test_alert_attributes_keep_the_state() -> None:
    sensor = alert_messages(SETTINGS, ALERTS[0])[0].payload
    assert sensor is not None
    attributes = json.loads(_render(sensor["json_attributes_template"], json.dumps(ALERTS[0])))
    assert attributes["alert_state"] == "new"
    assert attributes["source"] == "garage"


# -- Home Assistant's own code (opt-in) ------------------------------------------------------


def test_configs_pass_home_assistant_schemas() -> None:
    """Runs scripts/check_ha_schemas.py under a Python that has homeassistant installed.

    Opt-in (HOMEALERT_HA_CHECK=1) because homeassistant needs Python >= 3.13 and a
    large install; HOMEALERT_HA_PYTHON names that interpreter.
    """
    if os.environ.get("HOMEALERT_HA_CHECK") != "1":
        pytest.skip(
            "HA schema check not run: set HOMEALERT_HA_CHECK=1 (see scripts/check_ha_schemas.py)"
        )
    python = os.environ.get("HOMEALERT_HA_PYTHON", "/tmp/ha-venv/bin/python")
    if not Path(python).exists():
        pytest.fail(f"HOMEALERT_HA_CHECK=1 but {python} does not exist (set HOMEALERT_HA_PYTHON)")
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_ha_schemas.py"
    result = subprocess.run(
        [python, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    sys.stdout.write(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_silence_is_a_button_that_expires_it() -> None:
    [message] = silence_messages(SETTINGS, "boiler-work")
    assert message.topic == f"homeassistant/button/{BASE}/silence_boiler-work/config"
    assert message.payload is not None
    assert message.payload["name"] == "Expire silence boiler-work"
    assert message.payload["command_topic"] == f"{BASE}/silence/boiler-work/expire"
    assert message.payload["json_attributes_topic"] == f"{BASE}/silence/boiler-work"
    assert message.payload["device"]["identifiers"] == [f"homealert_{BASE}"]
