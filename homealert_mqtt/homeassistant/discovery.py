"""Home Assistant MQTT discovery messages, built as plain data.

Pure functions: they return `DiscoveryMessage`s (topic + JSON-able payload) and never
touch MQTT, so the tests can check every key against HA's documented schema.

Layout of what is published (prefix `homeassistant`, node id from the base topic):

- `<prefix>/device/<node_id>/service/config`: one *device-based* discovery message
  (HA >= 2024.11) for the "HomeAlert" device with its components (summary sensors,
  "Problem", "Needs attention", "Presence problems", "Acknowledge all", the event
  entity, and the diagnostic entities of diagnostic_entities.py). One retained message
  keeps the device and its entities consistent.
- `<prefix>/{binary_sensor,button}/<node_id>/alert_<id>[_resolve]/config`: one
  *single-component* message per entity of one alert. Per alert, not inside the
  service's message, so that adding or removing an alert never rewrites the
  service's config. Each alert is a device of its own ("Basement water leak"),
  connected through the service's device.

Supported Home Assistant versions: 2024.11 or later (device-based discovery; older
versions ignore the device message, so only the per-alert entities would appear).
Checked against HA 2025.4's schemas. `object_id` and `default_entity_id` are both
sent: HA before 2025.10 reads the former and drops the latter as unknown; later
versions prefer the latter and do not warn when both are present.

Facts from HA's code and docs that shape the payloads (source/_integrations/
mqtt.markdown, HA core homeassistant/components/mqtt/{discovery,schemas}.py):
every entity has a `unique_id` (without it the device block is ignored); the
`origin` block needs `name`, or the whole message is dropped; entity names do not
repeat the device name (entities have `has_entity_name`); unknown keys are dropped
silently, hence the key tables in the tests.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from homealert_mqtt.models import readable_name

from . import templates
from .diagnostic_entities import diagnostic_components

ORIGIN_NAME: Final = "homealert-mqtt"
DEVICE_NAME: Final = "HomeAlert"
COMMAND_PAYLOAD: Final = '{"by": "home_assistant"}'

# Lifecycle events forwarded to the HA event entity (`<base>/ha/event`); the others
# (deduplicated, notified, ...) are too chatty to be useful in HA's logbook.
HA_EVENT_TYPES: Final = ("created", "reopened", "escalated", "acknowledged", "resolved")

# HA's own topic pattern for discovery ids (homeassistant/components/mqtt/discovery.py)
_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")
# What HA allows in the object id part of an entity id: lower-case letters, digits and
# single underscores inside (homeassistant/core.py, VALID_ENTITY_ID).
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_CONFIG_TOPIC = re.compile(
    r"^(?P<prefix>.+)/(?P<component>\w+)/(?P<node_id>[a-zA-Z0-9_-]+)/"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config$"
)

SERVICE_OBJECT_ID: Final = "service"
ALERT_OBJECT_PREFIX: Final = "alert_"
SNOOZE_SUFFIX: Final = "_snooze"
SNOOZE_SECONDS: Final = 3600
# Config topics of one alert: (component, suffix of the object id). Generated alert ids
# end in a hash or an occurrence number (`-1a2b3c4d`, `-2`), so `alert_<id>_resolve`
# never names another alert's `alert_<id>`.
ALERT_ENTITIES: Final = (
    ("binary_sensor", ""),
    ("button", ""),
    ("button", "_resolve"),
    ("button", SNOOZE_SUFFIX),  # "Snooze 1 h" (noise control)
)


@dataclass(frozen=True)
class DiscoveryMessage:
    """One retained config (or its removal when `payload` is None)."""

    topic: str
    payload: dict[str, Any] | None
    retain: bool = True

    def encode(self) -> bytes:
        """The wire payload: compact JSON, or empty for a removal."""
        if self.payload is None:
            return b""
        return json.dumps(self.payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class DiscoverySettings:
    """What the builders need from the configuration."""

    base_topic: str = "homealert"
    prefix: str = "homeassistant"
    sw_version: str = "0.0.0"
    # Shown as "Visit" on the device page; e.g. the HTTP health endpoint. Optional.
    configuration_url: str | None = None
    support_url: str | None = None

    @property
    def node_id(self) -> str:
        return node_id_for(self.base_topic)

    @property
    def device_name(self) -> str:
        # Two installations with different base topics get two devices; only a
        # non-default base shows in the name.
        if self.base_topic == "homealert":
            return DEVICE_NAME
        return f"{DEVICE_NAME} {self.base_topic}"

    @property
    def event_topic(self) -> str:
        return f"{self.base_topic}/ha/event"

    @property
    def diagnostics_topic(self) -> str:
        return f"{self.base_topic}/diagnostics"


def node_id_for(base_topic: str) -> str:
    """Node id for the discovery topics, from the base topic.

    From the base topic rather than the client id: replicas sharing one base topic
    (shared subscriptions) have different client ids but are one device in HA.
    """
    node = _ID_CHARS.sub("_", base_topic).strip("_")
    return node or "homealert"


def object_id_slug(text: str) -> str:
    """`homealert_alert_water-leak` -> `homealert_alert_water_leak`: a valid HA object id.

    HA's own `slugify` for ASCII input: lower case, every run of other characters one
    `_`, none at either end. Alert ids and node ids may contain `-`, which is not
    valid in an entity id (HA would slugify `object_id` itself, but
    `default_entity_id` is meant to be a valid entity id as it is).
    """
    return _NOT_SLUG.sub("_", text.lower()).strip("_") or "homealert"


def parse_config_topic(topic: str) -> tuple[str, str, str] | None:
    """Split `<prefix>/<component>/<node_id>/<object_id>/config`.

    Returns (component, node_id, object_id), or None for anything else (including
    the node-less form, which this service never publishes).
    """
    match = _CONFIG_TOPIC.match(topic)
    if match is None:
        return None
    return match["component"], match["node_id"], match["object_id"]


def alert_object_id(alert_id: str) -> str:
    return f"{ALERT_OBJECT_PREFIX}{alert_id}"


def alert_config_topics(prefix: str, node_id: str, alert_id: str) -> list[str]:
    """The config topics of one alert's entities: problem sensor, Acknowledge, Resolve,
    Snooze 1 h."""
    object_id = alert_object_id(alert_id)
    return [
        f"{prefix}/{component}/{node_id}/{object_id}{suffix}/config"
        for component, suffix in ALERT_ENTITIES
    ]


def alert_id_of_config(topic: str, settings: DiscoverySettings) -> str | None:
    """The alert id behind one of our per-alert config topics, else None."""
    parsed = parse_config_topic(topic)
    if parsed is None:
        return None
    component, node_id, object_id = parsed
    if node_id != settings.node_id or not object_id.startswith(ALERT_OBJECT_PREFIX):
        return None
    alert_id = object_id.removeprefix(ALERT_OBJECT_PREFIX)
    for entity_component, suffix in ALERT_ENTITIES:
        if suffix and component == entity_component and alert_id.endswith(suffix):
            alert_id = alert_id.removesuffix(suffix)
            break
    if topic not in alert_config_topics(settings.prefix, settings.node_id, alert_id):
        return None
    return alert_id or None


def service_config_topic(prefix: str, node_id: str) -> str:
    return f"{prefix}/device/{node_id}/{SERVICE_OBJECT_ID}/config"


def ha_event_payload(event_name: str, alert_state: Mapping[str, Any]) -> bytes | None:
    """Payload for the HA event entity, or None for events HA does not get.

    `event_type` is what HA requires; the other keys become the event's attributes.
    """
    if event_name not in HA_EVENT_TYPES:
        return None
    payload = {
        "event_type": event_name,
        "id": alert_state.get("id"),
        "priority": alert_state.get("priority"),
        "source": alert_state.get("source"),
        "type": alert_state.get("type"),
        "message": alert_state.get("message"),
        "escalation_level": alert_state.get("escalation_level"),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


# -- blocks shared by every message ---------------------------------------------------


def _device(settings: DiscoverySettings) -> dict[str, Any]:
    # The full block in every message: HA wants the name in each entity's device
    # block, and retained configs arrive in no particular order after a restart.
    device: dict[str, Any] = {
        "identifiers": [f"homealert_{settings.node_id}"],
        "name": settings.device_name,
        "manufacturer": ORIGIN_NAME,
        "model": "MQTT alert manager",
        "sw_version": settings.sw_version,
    }
    if settings.configuration_url:
        device["configuration_url"] = settings.configuration_url
    return device


def _origin(settings: DiscoverySettings) -> dict[str, Any]:
    origin: dict[str, Any] = {"name": ORIGIN_NAME, "sw_version": settings.sw_version}
    if settings.support_url:
        origin["support_url"] = settings.support_url
    return origin


def _availability(settings: DiscoverySettings) -> list[dict[str, Any]]:
    return [
        {
            "topic": f"{settings.base_topic}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]


def _ids(settings: DiscoverySettings, component: str, key: str) -> dict[str, str]:
    """unique_id plus the entity id hints (old `object_id`, new `default_entity_id`).

    The unique_id keeps the alert id as it is (any string is allowed there, and it
    must not change); the entity id hints are slugs.
    """
    object_id = object_id_slug(f"{settings.node_id}_{key}")
    return {
        "unique_id": f"homealert_{settings.node_id}_{key}",
        "object_id": object_id,
        "default_entity_id": f"{component}.{object_id}",
    }


# -- the service device ---------------------------------------------------------------


def _service_components(settings: DiscoverySettings) -> dict[str, dict[str, Any]]:
    base = settings.base_topic
    summary = f"{base}/summary"
    return {
        "open_alerts": {
            "platform": "sensor",
            "name": "Open alerts",
            **_ids(settings, "sensor", "open_alerts"),
            "state_topic": summary,
            # open = active (not acknowledged) + acknowledged, per the summary contract
            "value_template": (
                "{{ (value_json.active | int(0)) + (value_json.acknowledged | int(0)) }}"
            ),
            "json_attributes_topic": summary,
            "json_attributes_template": templates.SUMMARY_ATTRIBUTES,
            "state_class": "measurement",
            "unit_of_measurement": "alerts",
            "icon": "mdi:bell-alert",
        },
        "active_alerts": {
            "platform": "sensor",
            "name": "Active alerts",
            **_ids(settings, "sensor", "active_alerts"),
            "state_topic": summary,
            "value_template": "{{ value_json.active | int(0) }}",
            "state_class": "measurement",
            "unit_of_measurement": "alerts",
            "icon": "mdi:bell-ring",
        },
        "highest_priority": {
            "platform": "sensor",
            "name": "Highest priority",
            **_ids(settings, "sensor", "highest_priority"),
            "state_topic": summary,
            "value_template": "{{ value_json.highest_priority or 'none' }}",
            # An enum sensor: HA knows every possible state (automations, history).
            "device_class": "enum",
            "options": ["P1", "P2", "P3", "P4", "P5", "none"],
            "icon": "mdi:alert-decagram",
        },
        "problem": {
            "platform": "binary_sensor",
            "name": "Problem",
            **_ids(settings, "binary_sensor", "problem"),
            "state_topic": summary,
            "value_template": (
                "{% set p = value_json.by_priority | default({}) %}"
                "{{ 'ON' if (p.P1 | default(0) | int(0)) + (p.P2 | default(0) | int(0)) > 0"
                " else 'OFF' }}"
            ),
            "device_class": "problem",
        },
        "needs_attention": {
            "platform": "binary_sensor",
            "name": "Needs attention",
            **_ids(settings, "binary_sensor", "needs_attention"),
            "state_topic": summary,
            # on while an open alert waits for someone; acknowledging turns it off
            "value_template": "{{ 'ON' if (value_json.active | int(0)) > 0 else 'OFF' }}",
            "device_class": "problem",
            "icon": "mdi:account-alert",
        },
        "presence": {
            # <base>/presence: devices offline and heartbeats late (presence.*); unknown
            # until presence is configured and has published.
            "platform": "sensor",
            "name": "Presence problems",
            **_ids(settings, "sensor", "presence"),
            "state_topic": f"{base}/presence",
            "value_template": (
                "{{ value_json.values() | rejectattr('state', 'eq', 'ok') | list | count }}"
            ),
            "json_attributes_topic": f"{base}/presence",
            "json_attributes_template": (
                "{% set v = value_json.values() | list %}"
                "{{ {'offline': v | selectattr('state', 'eq', 'offline')"
                " | map(attribute='name') | list,"
                " 'late': v | selectattr('state', 'eq', 'late')"
                " | map(attribute='name') | list} | tojson }}"
            ),
            "state_class": "measurement",
            "icon": "mdi:lan-disconnect",
        },
        "ack_all": {
            "platform": "button",
            "name": "Acknowledge all",
            **_ids(settings, "button", "ack_all"),
            "command_topic": f"{base}/ack_all",
            "payload_press": COMMAND_PAYLOAD,
            "qos": 1,
            "icon": "mdi:check-all",
        },
        "alert_event": {
            "platform": "event",
            "name": "Alert event",
            **_ids(settings, "event", "alert_event"),
            "state_topic": settings.event_topic,
            "event_types": list(HA_EVENT_TYPES),
            "icon": "mdi:bell-badge",
        },
        **diagnostic_components(settings, functools.partial(_ids, settings)),
    }


def service_messages(settings: DiscoverySettings) -> list[DiscoveryMessage]:
    """The device-based discovery message of the service device."""
    payload: dict[str, Any] = {
        "device": _device(settings),
        "origin": _origin(settings),
        "availability": _availability(settings),
        "components": _service_components(settings),
    }
    return [DiscoveryMessage(service_config_topic(settings.prefix, settings.node_id), payload)]


def service_removal(settings: DiscoverySettings) -> list[DiscoveryMessage]:
    return [DiscoveryMessage(service_config_topic(settings.prefix, settings.node_id), None)]


# -- one alert ------------------------------------------------------------------------


def alert_device(settings: DiscoverySettings, alert_id: str, name: str) -> dict[str, Any]:
    """Each alert is a device of its own, connected through the HomeAlert device.

    Its problem sensor has no name of its own (`name: null`, the device's main
    feature), so Home Assistant calls it "Basement water leak", and its buttons
    "Basement water leak Acknowledge"; with the entities on the service device they
    would all read "HomeAlert ...". The device goes when its last entity goes.
    """
    return {
        "identifiers": [f"homealert_{settings.node_id}_{alert_object_id(alert_id)}"],
        "name": name,
        "manufacturer": ORIGIN_NAME,
        "model": "Alert",
        "via_device": f"homealert_{settings.node_id}",
    }


def alert_messages(settings: DiscoverySettings, alert: Mapping[str, Any]) -> list[DiscoveryMessage]:
    """Configs for one alert's problem binary_sensor and its Acknowledge, Resolve and
    "Snooze 1 h" buttons.

    `alert` is the alert state as published on `<base>/alert/<id>`; only `id`,
    `source` and `type` are read (names are fixed when the entity is created).
    """
    alert_id = str(alert["id"])
    name = readable_name(str(alert.get("source") or ""), str(alert.get("type") or ""))
    state_topic = f"{settings.base_topic}/alert/{alert_id}"
    key = alert_object_id(alert_id)
    sensor_topic, ack_topic, resolve_topic, snooze_topic = alert_config_topics(
        settings.prefix, settings.node_id, alert_id
    )
    common = {
        "device": alert_device(settings, alert_id, name),
        "origin": _origin(settings),
        "availability": _availability(settings),
    }
    sensor = {
        "name": None,
        **_ids(settings, "binary_sensor", key),
        "state_topic": state_topic,
        "value_template": templates.ALERT_STATE,
        "json_attributes_topic": state_topic,
        "json_attributes_template": templates.ALERT_ATTRIBUTES,
        "device_class": "problem",
        **common,
    }
    ack = {
        "name": "Acknowledge",
        **_ids(settings, "button", f"{key}_ack"),
        "command_topic": f"{state_topic}/ack",
        "payload_press": COMMAND_PAYLOAD,
        "qos": 1,
        "icon": "mdi:check",
        **common,
    }
    resolve = {
        "name": "Resolve",
        **_ids(settings, "button", f"{key}_resolve"),
        "command_topic": f"{state_topic}/resolve",
        "payload_press": COMMAND_PAYLOAD,
        "qos": 1,
        "icon": "mdi:check-circle-outline",
        **common,
    }
    snooze = {
        "name": "Snooze 1 h",
        **_ids(settings, "button", f"{key}{SNOOZE_SUFFIX}"),
        "command_topic": f"{state_topic}/snooze",
        "payload_press": json.dumps({"for": SNOOZE_SECONDS, "by": "home_assistant"}),
        "qos": 1,
        "icon": "mdi:bell-sleep",
        **common,
    }
    return [
        DiscoveryMessage(sensor_topic, sensor),
        DiscoveryMessage(ack_topic, ack),
        DiscoveryMessage(resolve_topic, resolve),
        DiscoveryMessage(snooze_topic, snooze),
    ]


def remove_alert(settings: DiscoverySettings, alert_id: str) -> list[DiscoveryMessage]:
    """Empty retained payloads on its config topics: HA deletes the entities."""
    return [
        DiscoveryMessage(topic, None)
        for topic in alert_config_topics(settings.prefix, settings.node_id, alert_id)
    ]


# -- one silence (noise control) ------------------------------------------------------

_NOT_OBJECT_ID = re.compile(r"[^a-zA-Z0-9_-]+")


def silence_object_id(silence_id: str) -> str:
    return "silence_" + _NOT_OBJECT_ID.sub("_", silence_id)


def silence_messages(settings: DiscoverySettings, silence_id: str) -> list[DiscoveryMessage]:
    """A button "Expire silence <id>" on the service device; its attributes are the
    silence's retained state (matchers, until when, who, why)."""
    object_id = silence_object_id(silence_id)
    topic = f"{settings.base_topic}/silence/{silence_id}"
    payload: dict[str, Any] = {
        "name": f"Expire silence {silence_id}",
        **_ids(settings, "button", object_id),
        "command_topic": f"{topic}/expire",
        "payload_press": COMMAND_PAYLOAD,
        "qos": 1,
        "json_attributes_topic": topic,
        "icon": "mdi:bell-off",
        "device": _device(settings),
        "origin": _origin(settings),
        "availability": _availability(settings),
    }
    config = f"{settings.prefix}/button/{settings.node_id}/{object_id}/config"
    return [DiscoveryMessage(config, payload)]
