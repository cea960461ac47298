"""Static checks of the Home Assistant blueprints in blueprints/automation/homealert.

Home Assistant is not installed for the tests, so the blueprints are checked the way
HA reads them: YAML with `!input`, the modern automation keys (HA >= 2024.10), which
variables each template may see, and the MQTT topics against docs/mqtt-api.md. A few
templates are also rendered with a small stand-in for HA's Jinja environment.
"""

from __future__ import annotations

import ast
import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest
import yaml

from homealert_mqtt.homeassistant import DiscoverySettings, alert_messages

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINT_DIR = ROOT / "blueprints" / "automation" / "homealert"
DOCS = ROOT / "docs" / "home-assistant.md"
SOURCE_URL = "https://github.com/homealert-mqtt/homealert-mqtt/blob/main/{}"
MIN_VERSION = "2024.10.0"
BASE = "homealert"
ALERT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,95}$")

# docs/mqtt-api.md: what a blueprint may subscribe to or publish on.
CONTRACT_TOPICS = {
    f"{BASE}/event",
    f"{BASE}/summary",
    f"{BASE}/ack_all",
    f"{BASE}/alert/<id>/ack",
}
EVENT_NAMES = {
    "created",
    "deduplicated",
    "grouped",
    "reopened",
    "escalated",
    "notified",
    "notify_failed",
    "acknowledged",
    "resolved",
    "expired",
    "rejected",
}
EXPECTED_TOPICS = {
    "notify_phone.yaml": {f"{BASE}/event", f"{BASE}/alert/<id>/ack"},
    "ack_from_button.yaml": {f"{BASE}/ack_all", f"{BASE}/alert/<id>/ack"},
    "siren_on_p1.yaml": {f"{BASE}/summary"},
}

# Names HA provides to templates in a run (conditions, actions). `context` is not
# defined while the automation-level `variables:` are rendered.
RUN_NAMES = {"trigger", "this", "repeat", "wait", "context"}
HA_FUNCTIONS = {
    "states",
    "is_state",
    "state_attr",
    "is_state_attr",
    "has_value",
    "device_attr",
    "device_id",
    "device_entities",
    "integration_entities",
    "expand",
    "now",
    "utcnow",
    "as_timestamp",
    "iif",
}
JINJA_GLOBALS = {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
TEMPLATE_MARK = re.compile(r"\{\{|\{%")


@dataclass(frozen=True)
class Input:
    """A `!input name` reference."""

    name: str


@dataclass(frozen=True)
class Secret:
    """A `!secret name` reference."""

    name: str


class BlueprintLoader(yaml.SafeLoader):
    """SafeLoader that also reads Home Assistant's `!input` and `!secret` tags."""


def _construct_input(loader: yaml.SafeLoader, node: yaml.Node) -> Input:
    assert isinstance(node, yaml.ScalarNode)
    return Input(loader.construct_scalar(node))


def _construct_secret(loader: yaml.SafeLoader, node: yaml.Node) -> Secret:
    assert isinstance(node, yaml.ScalarNode)
    return Secret(loader.construct_scalar(node))


BlueprintLoader.add_constructor("!input", _construct_input)
BlueprintLoader.add_constructor("!secret", _construct_secret)


def load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=BlueprintLoader)  # noqa: S506
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


BLUEPRINT_FILES = sorted(BLUEPRINT_DIR.glob("*.yaml"))
BLUEPRINTS = {path.name: load(path) for path in BLUEPRINT_FILES}


@pytest.fixture(params=sorted(BLUEPRINTS), name="bp")
def _bp(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, BLUEPRINTS[request.param]


# --- walking the YAML ------------------------------------------------------------


def walk(node: Any) -> Iterator[Any]:
    """Every node below `node` (itself included), depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def templates(node: Any) -> Iterator[str]:
    for item in walk(node):
        if isinstance(item, str) and TEMPLATE_MARK.search(item):
            yield item


def automation_part(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != "blueprint"}


def action_variables(node: Any) -> set[str]:
    """Names set by `variables:` steps anywhere in a sequence."""
    names: set[str] = set()
    for item in walk(node):
        if isinstance(item, dict) and isinstance(item.get("variables"), dict):
            names.update(item["variables"])
    return names


def mqtt_publishes(node: Any) -> list[dict[str, Any]]:
    return [
        item["data"]
        for item in walk(node)
        if isinstance(item, dict) and item.get("action") == "mqtt.publish"
    ]


def mqtt_triggers(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in data.get("triggers", []) if t.get("trigger") == "mqtt"]


def normalise_topic(topic: str) -> str:
    """`{{ base_topic }}/alert/{{ alert_id }}/ack` -> `homealert/alert/<id>/ack`."""
    assert "{%" not in topic, f"topic with a statement: {topic!r}"
    topic = re.sub(r"\{\{\s*base_topic\s*\}\}", BASE, topic)
    return re.sub(r"\{\{.*?\}\}", "<id>", topic)


# --- structure ---------------------------------------------------------------------


def test_there_are_three_blueprints() -> None:
    assert sorted(BLUEPRINTS) == sorted(EXPECTED_TOPICS)


def test_blueprint_metadata(bp: tuple[str, dict[str, Any]]) -> None:
    name, data = bp
    meta = data["blueprint"]
    assert meta["name"].startswith("HomeAlert")
    assert len(meta["description"]) > 80
    assert meta["domain"] == "automation"
    assert meta["source_url"] == SOURCE_URL.format(f"blueprints/automation/homealert/{name}")
    assert meta["homeassistant"] == {"min_version": MIN_VERSION}
    assert isinstance(meta["homeassistant"]["min_version"], str)
    assert isinstance(meta["input"], dict)
    assert meta["input"]


def test_inputs_have_name_description_selector(bp: tuple[str, dict[str, Any]]) -> None:
    _, data = bp
    for key, spec in data["blueprint"]["input"].items():
        assert set(spec) <= {"name", "description", "default", "selector"}, key
        assert spec.get("name"), key
        assert spec.get("description"), key
        selector = spec.get("selector")
        assert isinstance(selector, dict), key
        assert len(selector) == 1, key
        (kind, options) = next(iter(selector.items()))
        if kind == "select":
            values = {o["value"] if isinstance(o, dict) else o for o in options["options"]}
            default = spec.get("default")
            defaults = default if isinstance(default, list) else [default]
            assert set(defaults) <= values, f"{key}: default {default!r} not an option"
            assert isinstance(default, list) == bool(options.get("multiple")), key


def test_base_topic_is_an_input_defaulting_to_homealert(
    bp: tuple[str, dict[str, Any]],
) -> None:
    _, data = bp
    spec = data["blueprint"]["input"]["base_topic"]
    assert spec["default"] == BASE
    assert "text" in spec["selector"]
    bound = False
    for section in ("trigger_variables", "variables"):
        if "base_topic" in data.get(section, {}):
            assert data[section]["base_topic"] == Input("base_topic"), section
            bound = True
    assert bound


def test_every_input_declared_and_used(bp: tuple[str, dict[str, Any]]) -> None:
    _, data = bp
    declared = set(data["blueprint"]["input"])
    used = {item.name for item in walk(automation_part(data)) if isinstance(item, Input)}
    assert used - declared == set(), "used but not declared"
    assert declared - used == set(), "declared but not used"
    assert not any(isinstance(item, Input) for item in walk(data["blueprint"]))


def test_no_input_tag_inside_strings(bp: tuple[str, dict[str, Any]]) -> None:
    _, data = bp
    for item in walk(automation_part(data)):
        if isinstance(item, str):
            assert "!input" not in item, f"!input inside a string: {item!r}"
            assert "!secret" not in item, f"!secret inside a string: {item!r}"


def test_modern_syntax(bp: tuple[str, dict[str, Any]]) -> None:
    _, data = bp
    assert "triggers" in data
    assert "actions" in data
    for old in ("trigger", "action", "condition"):
        assert old not in data, f"top-level {old!r}: use {old}s"
    for trig in data["triggers"]:
        assert "trigger" in trig
        assert "platform" not in trig
    for item in walk(automation_part(data)):
        if isinstance(item, dict):
            assert "service" not in item, f"`service:` is `action:` now: {item}"
            assert "payload_template" not in item
            assert "topic_template" not in item
    assert data.get("mode") in {"single", "restart", "queued", "parallel"}


def test_templates_parse(bp: tuple[str, dict[str, Any]]) -> None:
    _, data = bp
    env = jinja2.Environment(autoescape=False)  # noqa: S701
    for text in templates(automation_part(data)):
        env.parse(text)


def _names(text: str) -> set[str]:
    # The stand-in environment (below) knows the HA filters and tests the templates use.
    return set(jinja2.meta.find_undeclared_variables(ha_env().parse(text)))


def test_templates_only_use_names_in_scope(bp: tuple[str, dict[str, Any]]) -> None:
    """Each template may only read what HA defines at that point.

    - triggers and trigger_variables: limited templates, trigger_variables only;
    - automation-level variables: earlier ones, `trigger`, `this` (no `context`);
    - conditions and actions: all of those plus run variables and `variables` steps.
    """
    _, data = bp
    trigger_vars = set(data.get("trigger_variables", {}))
    for trig in data["triggers"]:
        for key, value in trig.items():
            if isinstance(value, str) and TEMPLATE_MARK.search(value):
                allowed = trigger_vars | (
                    {"value", "value_json"} if key == "value_template" else set()
                )
                assert _names(value) <= allowed, f"trigger {key}: {value!r}"

    defined = set(trigger_vars)
    for key, value in data.get("variables", {}).items():
        for text in templates(value):
            unknown = _names(text) - defined - {"trigger", "this"} - HA_FUNCTIONS - JINJA_GLOBALS
            assert unknown == set(), f"variables.{key} reads {unknown}"
        defined.add(key)

    run_scope = (
        defined | action_variables(data.get("actions")) | RUN_NAMES | HA_FUNCTIONS | JINJA_GLOBALS
    )
    for section in ("conditions", "actions"):
        for text in templates(data.get(section, [])):
            unknown = _names(text) - run_scope
            assert unknown == set(), f"{section}: {text!r} reads {unknown}"


def test_mqtt_topics_follow_the_contract(bp: tuple[str, dict[str, Any]]) -> None:
    name, data = bp
    topics = [t["topic"] for t in mqtt_triggers(data)]
    topics += [p["topic"] for p in mqtt_publishes(data["actions"])]
    normalised = {normalise_topic(t) for t in topics}
    assert normalised <= CONTRACT_TOPICS
    assert normalised == EXPECTED_TOPICS[name]


def test_event_triggers_name_contract_events(bp: tuple[str, dict[str, Any]]) -> None:
    _, data = bp
    for trig in mqtt_triggers(data):
        if normalise_topic(trig["topic"]) == f"{BASE}/event" and "payload" in trig:
            assert trig["value_template"] == "{{ value_json.event }}"
            assert trig["payload"] in EVENT_NAMES


def test_publishes_are_commands_with_by(bp: tuple[str, dict[str, Any]]) -> None:
    _, data = bp
    for publish in mqtt_publishes(data["actions"]):
        assert publish.get("retain") is False, "commands are never retained"
        assert publish.get("qos") == 1
        assert "'by':" in publish["payload"]
        assert "to_json" in publish["payload"]


def test_publish_to_an_alert_topic_checks_the_id(bp: tuple[str, dict[str, Any]]) -> None:
    """An id becomes a topic level: the run must have matched it against the id rule."""
    _, data = bp
    for publish in mqtt_publishes(data["actions"]):
        if "/alert/" in publish["topic"]:
            checks = [t for t in templates(data["actions"]) if "is match(" in t]
            assert any(ALERT_ID.pattern in t for t in checks)


# --- notify_phone specifics ------------------------------------------------------------


def _notify_sequences(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        item
        for item in walk(data["actions"])
        if isinstance(item, dict) and item.get("domain") == "mobile_app"
    ]


def test_notify_phone_triggers() -> None:
    data = BLUEPRINTS["notify_phone.yaml"]
    by_id: dict[str, set[str]] = {}
    for trig in mqtt_triggers(data):
        by_id.setdefault(trig["id"], set()).add(trig["payload"])
    assert by_id == {
        "alert": {"created", "reopened", "escalated"},
        "closed": {"acknowledged", "resolved", "expired"},
    }
    events = [t for t in data["triggers"] if t["trigger"] == "event"]
    assert [(t["id"], t["event_type"]) for t in events] == [
        ("tapped", "mobile_app_notification_action")
    ]


def test_notify_phone_notification_and_clear_share_the_tag() -> None:
    data = BLUEPRINTS["notify_phone.yaml"]
    sends = _notify_sequences(data)
    assert all(s["type"] == "notify" for s in sends)
    assert all(s["device_id"] == Input("notify_device") for s in sends)
    notify = [s for s in sends if s["message"] != "clear_notification"]
    clear = [s for s in sends if s["message"] == "clear_notification"]
    assert len(notify) == 1
    assert len(clear) == 1
    assert notify[0]["data"]["tag"] == clear[0]["data"]["tag"] == "{{ tag }}"
    assert data["variables"]["tag"] == "homealert-{{ alert_id }}"
    (button,) = notify[0]["data"]["actions"]
    assert button["title"] == "Acknowledge"
    assert button["action"] == "{{ action_prefix }}{{ alert_id }}"
    assert data["variables"]["action_prefix"].startswith("HOMEALERT_ACK_")


# --- rendering with a stand-in for HA's template environment ---------------------------

_IS_NUMERIC = re.compile(r"^[+-]?(?!0\d)\d*(?:\.\d*)?$")


def ha_result(rendered: str) -> Any:
    """HA's native types: a render that reads as a Python literal becomes one."""
    rendered = rendered.strip()
    try:
        value = ast.literal_eval(rendered)
    except (ValueError, SyntaxError, MemoryError, TypeError):
        return rendered
    if isinstance(value, str | complex):
        return rendered
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value if _IS_NUMERIC.match(rendered) else rendered
    return value


@dataclass
class FakeState:
    entity_id: str
    state: str
    attributes: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.attributes.get("friendly_name", self.entity_id))

    @property
    def domain(self) -> str:
        return self.entity_id.split(".")[0]


class FakeStates:
    """`states.<domain>` yields that domain's states, as in HA."""

    def __init__(self, states: list[FakeState]) -> None:
        self._states = states

    def __getattr__(self, domain: str) -> list[FakeState]:
        return [s for s in self._states if s.domain == domain]

    def get(self, entity_id: str) -> FakeState | None:
        return next((s for s in self._states if s.entity_id == entity_id), None)


def ha_env(states: list[FakeState] | None = None) -> jinja2.Environment:
    fake = FakeStates(states or [])
    env = jinja2.Environment(autoescape=False)  # noqa: S701

    def state_attr(entity_id: str, attribute: str) -> Any:
        state = fake.get(entity_id)
        return None if state is None else state.attributes.get(attribute)

    def is_state(entity_id: str, value: str) -> bool:
        state = fake.get(entity_id)
        return state is not None and state.state == value

    def slugify(value: str) -> str:
        return re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_")

    def match(value: Any, pattern: str) -> bool:
        return re.match(pattern, str(value)) is not None

    env.globals.update(
        states=fake,
        state_attr=state_attr,
        is_state=is_state,
        device_attr=lambda device_id, attr: {"name": "Pixel"}.get(attr),
    )
    env.filters.update(slugify=slugify, to_json=json.dumps)
    env.tests.update(match=match, is_state=is_state)
    return env


def render_block(
    env: jinja2.Environment, block: dict[str, Any], scope: dict[str, Any]
) -> dict[str, Any]:
    """Render a `variables:` block in order, each seeing the ones before."""
    scope = dict(scope)
    for key, value in block.items():
        if isinstance(value, str) and TEMPLATE_MARK.search(value):
            scope[key] = ha_result(env.from_string(value).render(scope))
        else:
            scope[key] = value
    return scope


def with_inputs(block: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: inputs[v.name] if isinstance(v, Input) else v for k, v in block.items()}


NOTIFY_INPUTS = {
    "notify_device": "0a1b2c3d4e5f",
    "priorities": ["P1", "P2"],
    "urgent_priorities": ["P1"],
    "ack_by": "",
    "android_channel": "HomeAlert",
    "base_topic": BASE,
}


def notify_vars(trigger: dict[str, Any], states: list[FakeState] | None = None) -> dict[str, Any]:
    block = with_inputs(BLUEPRINTS["notify_phone.yaml"]["variables"], NOTIFY_INPUTS)
    return render_block(ha_env(states), block, {"trigger": trigger})


def test_notify_phone_renders_a_created_event() -> None:
    event = {
        "event": "created",
        "id": "disk-full-7",
        "at": "2024-11-01T10:00:00Z",
        "priority": "P1",
        "source": "nas",
        "type": "disk_full",
        "message": "Volume 1 is 97% full",
    }
    out = notify_vars({"id": "alert", "payload_json": event})
    assert out["alert_id"] == "disk-full-7"
    assert out["tag"] == "homealert-disk-full-7"
    assert out["alert_entity"] == ""
    assert out["alert_title"] == "HomeAlert P1: nas / disk_full"
    assert out["alert_message"] == "Volume 1 is 97% full"
    assert out["urgent"] is True
    assert out["action_prefix"] == "HOMEALERT_ACK_0a1b2c3d4e5f_"


def test_notify_phone_pages_again_for_a_reopened_alert() -> None:
    """A flapping leak sensor: the alert opens again within the dedup window, and the
    phone is paged again under the same tag (the earlier notification is replaced)."""
    event = {
        "event": "reopened",
        "id": "basement-water_leak-1a2b3c4d",
        "priority": "P1",
        "source": "basement",
        "type": "water_leak",
        "message": "Water on the floor",
    }
    out = notify_vars({"id": "alert", "payload_json": event})
    assert out["alert_title"] == "HomeAlert P1 again: basement / water_leak"
    assert out["tag"] == "homealert-basement-water_leak-1a2b3c4d"
    assert out["alert_message"] == "Water on the floor"
    (notify,) = [
        c for c in BLUEPRINTS["notify_phone.yaml"]["actions"][0]["choose"] if "Notify" in c["alias"]
    ]
    assert {"condition": "trigger", "id": "alert"} in notify["conditions"]


def test_notify_phone_falls_back_to_the_alert_entity() -> None:
    entity = FakeState(
        "binary_sensor.homealert_alert_42",
        "on",
        {
            "id": "42",
            "alert_state": "escalated",
            "priority": "P2",
            "source": "boiler",
            "type": "pressure",
            "message": "low",
            "escalation_level": 1,
        },
    )
    event = {"event": "escalated", "id": "42", "at": "2024-11-01T10:15:00Z"}
    out = notify_vars({"id": "alert", "payload_json": event}, [entity])
    assert out["alert_id"] == 42  # HA turns it into a number; templates use `| string`
    assert out["tag"] == "homealert-42"
    assert out["alert_entity"] == "binary_sensor.homealert_alert_42"
    assert out["alert_priority"] == "P2"
    assert out["alert_title"] == "HomeAlert P2 escalated (level 1): boiler / pressure"
    assert out["alert_message"] == "low"
    assert out["urgent"] is False


@pytest.mark.parametrize(
    ("action", "alert_id"),
    [
        ("HOMEALERT_ACK_0a1b2c3d4e5f_water-leak", "water-leak"),
        ("HOMEALERT_ACK_0a1b2c3d4e5f_1e5", "1e5"),
        ("HOMEALERT_ACK_ffffffffffff_water-leak", ""),  # another phone's button
        ("SOMETHING_ELSE", ""),
        ("12", ""),
    ],
)
def test_notify_phone_reads_the_tapped_button(action: str, alert_id: str) -> None:
    out = notify_vars({"id": "tapped", "event": {"data": {"action": action}}})
    assert str(out["alert_id"]) == alert_id


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({"active": 0, "acknowledged": 0, "by_priority": {"P1": 0}}, 0),
        ({"active": 2, "acknowledged": 0, "by_priority": {"P1": 2, "P3": 0}}, 2),
        ({"active": 0, "acknowledged": 1, "by_priority": {"P1": 1}}, 0),
        ({"active": 1, "acknowledged": 1, "by_priority": {"P1": 0, "P3": 2}}, 0),
        # ambiguous without active_by_priority: read the per-alert entities (one acked)
        ({"active": 1, "acknowledged": 1, "by_priority": {"P1": 2}}, 1),
        (
            {
                "active": 1,
                "acknowledged": 1,
                "by_priority": {"P1": 2},
                "active_by_priority": {"P1": 0, "P2": 1},
            },
            0,
        ),
        ({"active_by_priority": {"P1": 3}}, 3),
        ("", 0),
    ],
)
def test_siren_counts_unacknowledged_p1(summary: Any, expected: int) -> None:
    def alert(key: str, priority: str, alert_state: str) -> FakeState:
        attributes = {"id": key, "priority": priority, "alert_state": alert_state}
        return FakeState(f"binary_sensor.homealert_alert_{key}", "on", attributes)

    entities = [
        alert("a", "P1", "active"),
        alert("b", "P1", "acknowledged"),
        alert("c", "P3", "new"),
        FakeState("binary_sensor.kitchen_window", "on", {"priority": "P1"}),
    ]
    data = BLUEPRINTS["siren_on_p1.yaml"]
    block = with_inputs(
        data["variables"],
        {"alarm_entities": [], "flash_lights": [], "flash_interval": 10, "restore_lights": True},
    )
    trigger: dict[str, Any] = {"payload": json.dumps(summary)}
    if isinstance(summary, dict):
        trigger["payload_json"] = summary
    out = render_block(ha_env(entities), block, {"trigger": trigger})
    assert out["p1_unacknowledged"] == expected


def _button_ack_id(mode: str) -> Any:
    def alert(key: str, priority: str, alert_state: str, first_seen: str) -> FakeState:
        attributes = {
            "id": key,
            "priority": priority,
            "alert_state": alert_state,
            "first_seen": first_seen,
        }
        return FakeState(f"binary_sensor.homealert_alert_{key}", "on", attributes)

    entities = [
        alert("old-p1", "P1", "escalated", "2024-11-01T08:00:00Z"),
        alert("new-p3", "P3", "new", "2024-11-01T10:00:00Z"),
        alert("newer-acked", "P1", "acknowledged", "2024-11-01T11:00:00Z"),
        alert("mid-p1", "P1", "active", "2024-11-01T09:00:00Z"),
        # not HomeAlert's: no alert_state attribute
        FakeState("binary_sensor.door", "on", {"id": "door", "first_seen": "2099-01-01"}),
    ]
    data = BLUEPRINTS["ack_from_button.yaml"]
    (step,) = [
        item
        for item in walk(data["actions"])
        if isinstance(item, dict) and "ack_id" in item.get("variables", {})
    ]
    return render_block(ha_env(entities), step["variables"], {"ack_mode": mode})["ack_id"]


def test_ack_from_button_picks_the_newest_unacknowledged() -> None:
    assert _button_ack_id("newest") == "new-p3"


def test_ack_from_button_picks_the_most_urgent_then_newest() -> None:
    assert _button_ack_id("most_urgent") == "mid-p1"


def test_ack_from_button_who_and_conditions() -> None:
    data = BLUEPRINTS["ack_from_button.yaml"]
    inputs = {
        "ack_mode": "ack_all",
        "only_turn_on": True,
        "event_types": ["press"],
        "ack_by": "",
        "base_topic": BASE,
    }
    button = FakeState("event.hall_button", "2024-11-01T10:00:00Z", {"friendly_name": "Hall"})
    env = ha_env([button])

    def passes(from_state: FakeState | None, to_state: FakeState) -> bool:
        trigger = {"entity_id": to_state.entity_id, "from_state": from_state, "to_state": to_state}
        scope = render_block(env, with_inputs(data["variables"], inputs), {"trigger": trigger})
        assert scope["who"] == "Hall" or to_state.entity_id != "event.hall_button"
        return all(
            ha_result(env.from_string(c["value_template"]).render(scope)) is True
            for c in data["conditions"]
        )

    def ev(stamp: str, event_type: str) -> FakeState:
        return FakeState("event.hall_button", stamp, {"event_type": event_type})

    assert passes(ev("t1", "press"), ev("t2", "press"))
    assert not passes(ev("t1", "press"), ev("t2", "hold"))
    assert not passes(None, ev("t2", "press"))
    switch_on = FakeState("switch.wall", "on", {})
    switch_off = FakeState("switch.wall", "off", {})
    assert passes(switch_off, switch_on)
    assert not passes(switch_on, switch_off)


def test_discovered_alert_sensor_carries_what_the_blueprints_read() -> None:
    """The per-alert problem sensor HomeAlert announces has the attributes read above."""
    alert = {
        "id": "water-leak",
        "state": "escalated",
        "priority": "P1",
        "severity": "critical",
        "source": "basement",
        "type": "leak",
        "message": "Water under the boiler",
        "count": 1,
        "first_seen": "2024-11-01T10:00:00Z",
        "last_seen": "2024-11-01T10:00:00Z",
        "escalation_level": 1,
    }
    sensor = next(
        m.payload
        for m in alert_messages(DiscoverySettings(), alert)
        if m.topic.split("/")[1] == "binary_sensor"
    )
    assert sensor is not None
    assert sensor["default_entity_id"].startswith("binary_sensor.homealert_alert_")
    env = ha_env()
    attributes = json.loads(
        env.from_string(sensor["json_attributes_template"]).render(value_json=alert)
    )
    for key in ("id", "alert_state", "priority", "source", "type", "message", "first_seen"):
        assert key in attributes, key
    assert attributes["alert_state"] == "escalated"
    assert attributes["escalation_level"] == 1
    state = env.from_string(sensor["value_template"]).render(value_json=alert)
    assert state == "ON"


# --- docs ---------------------------------------------------------------------------


def test_docs_offer_an_import_link_for_every_blueprint() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name, data in BLUEPRINTS.items():
        url = data["blueprint"]["source_url"]
        quoted = urllib.parse.quote(url, safe="")
        link = f"https://my.home-assistant.io/redirect/blueprint_import/?blueprint_url={quoted}"
        assert link in text, f"no import link for {name}"


def test_docs_yaml_examples_parse_and_follow_the_contract() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 5
    topics = set()
    for block in blocks:
        data = yaml.load(block, Loader=BlueprintLoader)  # noqa: S506
        for item in walk(data):
            if isinstance(item, dict):
                assert "service" not in item, f"`service:` is `action:` now: {item}"
                if "trigger" in item:
                    assert "platform" not in item
        topics |= {normalise_topic(p["topic"]) for p in mqtt_publishes(data)}
    allowed = CONTRACT_TOPICS | {f"{BASE}/alert/<id>/resolve", f"{BASE}/in/homeassistant"}
    assert topics <= allowed
    assert f"{BASE}/alert/<id>/ack" in topics
