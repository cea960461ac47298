"""The voluptuous schema of the whole config, and errors phrased with dotted key paths."""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

from homealert_mqtt.config.errors import ConfigError
from homealert_mqtt.models import Priority, State
from homealert_mqtt.noise import schedules
from homealert_mqtt.noise.matchers import BadMatcher, Matcher, check_field
from homealert_mqtt.notify.registry import CHANNEL_SCHEMAS

ATTRIBUTE_NAME = re.compile(r"^(attributes\.)?[A-Za-z0-9_.-]{1,64}$")
TOPIC_LEVEL = re.compile(r"^[^#+/\x00]+(/[^#+/\x00]+)*$")
POLICY_NAMES = ("p1", "p2", "p3", "p4", "p5", "default")


def _typename(value: Any) -> str:
    return type(value).__name__


def integer(minimum: int = 0, maximum: int | None = None) -> Any:
    """An int (not a bool, not a string of digits) within bounds."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise vol.Invalid(f"expected int, got {value!r}")
        if value < minimum:
            raise vol.Invalid(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise vol.Invalid(f"must be at most {maximum}, got {value}")
        return value

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise vol.Invalid(f"expected true or false, got {value!r}")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid(f"expected a string, got {_typename(value)} {value!r}")
    return value


def optional_string(value: Any) -> str | None:
    return None if value is None else string(value)


def attribute_name(value: Any) -> str:
    name = string(value)
    if not ATTRIBUTE_NAME.match(name):
        raise vol.Invalid(f"not a field name: {name!r}")
    return name


def string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise vol.Invalid(f"expected a list, got {_typename(value)} {value!r}")
    return [string(item) for item in value]


def priority(value: Any) -> str:
    text = string(value).upper()
    if text not in Priority.__members__:
        raise vol.Invalid(f"expected one of P1..P5, got {value!r}")
    return text


def base_topic(value: Any) -> str:
    topic = string(value)
    if not TOPIC_LEVEL.match(topic):
        raise vol.Invalid(f"not a usable MQTT topic prefix (no +, #, empty levels): {topic!r}")
    return topic


def url(*schemes: str, allow_auto: bool = False, allow_none: bool = False) -> Any:
    def check(value: Any) -> str | None:
        if allow_none and value is None:
            return None
        text = string(value)
        if allow_auto and text == "auto":
            return text
        scheme = text.split("://", 1)[0] if "://" in text else ""
        if scheme not in schemes:
            raise vol.Invalid(f"expected a {' or '.join(s + '://' for s in schemes)} URL")
        return text

    return check


LEVEL = vol.Schema(
    {
        vol.Optional("delay", default=0): integer(),
        vol.Required("channels"): vol.All(string_list, vol.Length(min=1)),
        vol.Required("groups"): vol.All(string_list, vol.Length(min=1)),
    }
)
LEVELS = vol.All([LEVEL], vol.Length(min=1))


def policy(value: Any) -> dict[str, Any]:
    """A list of levels (the seed's shape) or `{levels: [...], repeat: seconds}`."""
    if isinstance(value, list):
        return {"levels": LEVELS(value), "repeat": None}
    return POLICY_MAPPING(value)  # type: ignore[no-any-return]


POLICY_MAPPING = vol.Schema(
    {
        vol.Required("levels"): LEVELS,
        vol.Optional("repeat", default=None): vol.Any(None, integer(minimum=30)),
    }
)


def matchers(value: Any) -> dict[str, str]:
    """A matcher object (noise/matchers.py): the field at fault named in the path."""
    try:
        return Matcher.parse(value).to_json()
    except BadMatcher as err:
        raise vol.Invalid(err.reason, path=[err.field] if err.field else []) from err


def _with(parse: Any) -> Any:
    def check(value: Any) -> Any:
        try:
            parse(value)
        except ValueError as err:
            raise vol.Invalid(str(err)) from err
        return value

    return check


def timezone(value: Any) -> str | None:
    if value is None:
        return None
    name = string(value)
    try:
        schedules.zone(name)
    except (ValueError, KeyError) as err:
        raise vol.Invalid(f"unknown time zone {name!r} (an IANA name: Europe/Berlin)") from err
    return name


def schedule_name(value: Any) -> str:
    name = string(value)
    if not schedules.NAME.match(name):
        raise vol.Invalid(f"expected 1-64 of [a-z0-9_-], got {name!r}")
    return name


def _window(value: dict[str, Any]) -> dict[str, Any]:
    if value["start"] == value["end"]:
        raise vol.Invalid("start and end are the same time (a window is shorter than a day)")
    return value


SCHEDULE = vol.All(
    vol.Schema(
        {
            vol.Required("name"): schedule_name,
            vol.Required("matchers"): matchers,
            vol.Optional("days", default=list(schedules.DAYS)): vol.All(
                [_with(schedules.parse_day)], vol.Length(min=1)
            ),
            vol.Required("start"): _with(schedules.parse_clock),
            vol.Required("end"): _with(schedules.parse_clock),
        }
    ),
    _window,
)


def _unique_names(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = [item["name"] for item in value]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise vol.Invalid(f"a second schedule named {name!r}", path=[index, "name"])
    return value


def equal_fields(value: Any) -> list[str]:
    names = string_list(value)
    for index, name in enumerate(names):
        try:
            check_field(name, "equal")
        except BadMatcher as err:
            raise vol.Invalid(err.reason, path=[index]) from err
    return names


INHIBIT_RULE = vol.Schema(
    {
        vol.Required("source_matchers"): matchers,
        vol.Required("target_matchers"): matchers,
        vol.Optional("equal", default=[]): equal_fields,
    }
)

TYPE_BEHAVIOUR = vol.Schema(
    {
        vol.Optional("hold_down"): integer(0, 7 * 24 * 3600),
        vol.Optional("auto_resolve"): integer(0, 365 * 24 * 3600),
        vol.Optional("latch"): boolean,
        vol.Optional("flapping"): {
            vol.Required("reopens"): integer(2, 1000),
            vol.Required("window"): integer(1, 7 * 24 * 3600),
        },
    }
)

RATE_LIMIT = vol.Schema(
    {
        vol.Optional("count"): integer(minimum=1),
        vol.Optional("period"): integer(minimum=1),
    }
)

ALERTS = vol.Schema(
    {
        vol.Required("retention"): {vol.Required(state.value): integer(1) for state in State},
        vol.Required("deduplication"): {
            vol.Required("enabled"): boolean,
            vol.Required("window"): integer(),
            vol.Required("attributes"): vol.All([attribute_name], vol.Length(min=1)),
        },
        vol.Required("grouping"): {
            vol.Required("enabled"): boolean,
            vol.Required("window"): integer(),
            vol.Required("max_group_size"): integer(1, 1000),
            vol.Required("attributes"): vol.All([attribute_name], vol.Length(min=1)),
            vol.Required("digest_interval"): integer(1),
        },
        vol.Required("priorities"): {string: priority},
        vol.Required("history"): {
            vol.Required("max_entries"): integer(1, 1_000_000),
            vol.Required("max_age"): integer(1),
        },
        vol.Required("escalation"): {
            vol.Required("policies"): {vol.In(POLICY_NAMES): policy},
            vol.Optional("rate_limits", default={}): {string: RATE_LIMIT},
            vol.Optional("notify_resolved", default=True): boolean,
            vol.Optional("lease", default=90): integer(2, 3600),
            vol.Optional("concurrency", default=32): integer(1, 1000),
            vol.Optional("ack_timeout", default=0): integer(0, 365 * 24 * 3600),
        },
        vol.Optional("timezone", default=None): timezone,
        vol.Optional("inhibit_rules", default=[]): [INHIBIT_RULE],
        vol.Optional("types", default={}): {string: TYPE_BEHAVIOUR},
        vol.Optional("silences", default={}): {
            vol.Optional("schedules", default=[]): vol.All([SCHEDULE], _unique_names),
        },
    }
)

QUIET_HOURS = vol.All(
    vol.Schema(
        {
            vol.Required("start"): _with(schedules.parse_clock),
            vol.Required("end"): _with(schedules.parse_clock),
            vol.Optional("except", default=[]): [priority],
        }
    ),
    _window,
)
# Per group: addresses per channel, and its quiet hours (noise/quiet_hours.py).
RECIPIENT_GROUP = vol.Schema({vol.Optional("quiet_hours"): QUIET_HOURS, string: string_list})
RECIPIENTS = vol.Schema({vol.Required("groups"): {string: vol.Any(None, RECIPIENT_GROUP)}})

TEMPLATES = vol.Schema(
    {
        vol.Required("base_dir"): string,
        vol.Required("default_template"): string,
        vol.Required("custom_templates"): vol.Any(None, {string: string}),
    }
)

TLS = {
    vol.Optional("enabled"): boolean,
    vol.Optional("ca_certs"): optional_string,
    vol.Optional("certfile"): optional_string,
    vol.Optional("keyfile"): optional_string,
    vol.Optional("insecure"): boolean,
}

MQTT = vol.Schema(
    {
        vol.Required("url"): url("mqtt", "mqtts", allow_auto=True),
        vol.Required("base_topic"): base_topic,
        vol.Optional("client_id"): vol.Any(None, vol.All(string, vol.Length(min=1, max=64))),
        vol.Optional("username"): optional_string,
        vol.Optional("password"): optional_string,
        vol.Required("protocol"): vol.In([5, 3.1, "3.1.1", 311, "5"], msg="expected 5 or 3.1.1"),
        vol.Required("keepalive"): integer(5, 3600),
        vol.Required("max_payload_bytes"): integer(256, 16 * 1024 * 1024),
        vol.Optional("shared_group", default=""): vol.Any(None, string),
        vol.Optional("broker_name"): optional_string,
        vol.Optional("tls", default={}): TLS,
    }
)

REDIS = vol.Schema(
    {
        vol.Required("url"): url("redis", "rediss", "unix"),
        vol.Required("key_prefix"): vol.All(string, vol.Match(r"^[A-Za-z0-9_.:-]{1,64}$")),
        vol.Optional("max_connections", default=None): vol.Any(None, integer(8, 10000)),
        vol.Optional("health_check_interval", default=15): integer(1, 3600),
        vol.Optional("tls", default={}): TLS,
    }
)

HOMEASSISTANT = vol.Schema(
    {
        vol.Required("discovery"): boolean,
        vol.Required("discovery_prefix"): base_topic,
        vol.Optional("configuration_url", default=None): url("http", "https", allow_none=True),
    }
)

HTTP = vol.Schema(
    {
        vol.Optional("enabled", default=False): boolean,
        vol.Optional("host", default="127.0.0.1"): string,
        vol.Optional("port", default=9466): integer(1, 65535),
    }
)

ZEROCONF = vol.Schema(
    {
        vol.Optional("announce", default="auto"): vol.Any(
            boolean, "auto", msg="expected true, false or auto"
        ),
        vol.Optional("interfaces", default=None): vol.Any(
            None, vol.All(string_list, vol.Length(min=1)), msg="expected a list of addresses"
        ),
        vol.Optional("browse_timeout", default=3): integer(1, 60),
    }
)


def _one_plus_filter(value: Any) -> str:
    topic = string(value)
    levels = topic.split("/")
    if levels.count("+") != 1 or "#" in topic or any(not lv for lv in levels):
        raise vol.Invalid(f"expected a topic with exactly one + level for the device: {topic!r}")
    return topic


def _availability_entry(value: Any) -> dict[str, Any]:
    entry: dict[str, Any] = AVAILABILITY(value)
    if entry["preset"] == "generic":
        for key in ("topic", "offline", "online"):
            if entry.get(key) is None:
                raise vol.Invalid("required for preset generic", path=[key])
    elif entry.get("topic") is not None:
        raise vol.Invalid("only preset generic takes a topic (use base_topic)", path=["topic"])
    return entry


AVAILABILITY = vol.Schema(
    {
        vol.Required("preset"): vol.In(
            ["zigbee2mqtt", "tasmota", "esphome", "shelly", "generic"],
            msg="expected zigbee2mqtt, tasmota, esphome, shelly or generic",
        ),
        vol.Optional("base_topic"): vol.Any(None, vol.All(string, vol.Match(r"^[^#+\x00]*$"))),
        vol.Optional("topic"): vol.Any(None, _one_plus_filter),
        vol.Optional("offline"): optional_string,
        vol.Optional("online"): optional_string,
        vol.Optional("json_key"): optional_string,
        vol.Optional("for", default=300): integer(0, 7 * 86400),
        vol.Optional("severity", default="high"): string,
    }
)

HEARTBEAT = vol.Schema(
    {
        vol.Required("every"): integer(1, 366 * 86400),
        vol.Optional("grace", default=0): integer(0, 366 * 86400),
        vol.Optional("severity", default="high"): string,
    }
)

PRESENCE = vol.Schema(
    {
        vol.Optional("availability", default=[]): vol.Any(None, [_availability_entry]),
        vol.Optional("heartbeats", default={}): vol.Any(
            None, {vol.Match(r"^[A-Za-z0-9_.-]{1,64}$", msg="not a heartbeat name"): HEARTBEAT}
        ),
    }
)

LOGGING = vol.Schema(
    {
        vol.Required("level"): vol.All(
            string, vol.Lower, vol.In(["debug", "info", "warning", "error"])
        )
    }
)


def _channels(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise vol.Invalid(f"expected a mapping, got {_typename(value)}")
    result: dict[str, Any] = {}
    errors: list[vol.Invalid] = []
    for name, section in value.items():
        schema = CHANNEL_SCHEMAS.get(name)
        if schema is None:
            known = ", ".join(sorted(CHANNEL_SCHEMAS)) or "none"
            errors.append(vol.Invalid(f"unknown channel (known: {known})", path=[name]))
            continue
        try:
            result[name] = schema(section if section is not None else {})
        except vol.MultipleInvalid as err:
            errors.extend(vol.Invalid(e.msg, path=[name, *e.path]) for e in err.errors)
        except vol.Invalid as err:
            errors.append(vol.Invalid(err.msg, path=[name, *err.path]))
    if errors:
        raise vol.MultipleInvalid(errors)
    return result


ROOT = vol.Schema(
    {
        vol.Required("alerts"): ALERTS,
        vol.Required("channels"): _channels,
        vol.Required("recipients"): RECIPIENTS,
        vol.Required("templates"): TEMPLATES,
        vol.Required("mqtt"): MQTT,
        vol.Required("redis"): REDIS,
        vol.Required("homeassistant"): HOMEASSISTANT,
        vol.Optional("http", default={}): HTTP,
        vol.Optional("zeroconf", default={}): ZEROCONF,
        vol.Optional("presence", default={}): PRESENCE,
        vol.Required("logging"): LOGGING,
    }
)


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """The validated config, or ConfigError with one `path: reason` per problem.

    References between sections are checked on the config as written, beside the
    schema, so that one run reports a wrong type and an unknown recipient group together.
    """
    problems: list[str] = []
    validated: dict[str, Any] = {}
    try:
        validated = ROOT(config)
    except vol.MultipleInvalid as err:
        problems = sorted({_describe(e, config) for e in err.errors})
    problems += [p for p in _cross_check(config) if p not in problems]
    if problems:
        raise ConfigError(problems)
    return validated


def _describe(error: vol.Invalid, config: dict[str, Any]) -> str:
    path = format_path(error.path)
    message = error.msg
    if message == "extra keys not allowed":
        message = "unknown key"
    elif message.startswith("expected ") and ", got" not in message:
        found, value = _lookup(config, error.path)
        if found:
            message = f"{message}, got {value!r}"
    elif message == "required key not provided":
        message = "required key missing"
    return f"{path}: {message}" if path else message


def format_path(path: list[Any]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _lookup(config: Any, path: list[Any]) -> tuple[bool, Any]:
    node = config
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, node


def _cross_check(config: dict[str, Any]) -> list[str]:
    """References between sections: policies name channels and recipient groups that exist.

    Works on the raw config (what is malformed is the schema's to report, and skipped).
    """
    problems: list[str] = _pool_budget(config)
    _, groups = _lookup(config, ["recipients", "groups"])
    known_groups = set(groups) if isinstance(groups, dict) else set() if groups is None else None
    _, policies = _lookup(config, ["alerts", "escalation", "policies"])
    if not isinstance(policies, dict):
        return problems
    for name, pol in policies.items():
        where = f"alerts.escalation.policies.{name}"
        levels = pol.get("levels") if isinstance(pol, dict) else pol
        prefix = f"{where}.levels" if isinstance(pol, dict) else where
        if not isinstance(levels, list):
            continue
        for index, level in enumerate(levels):
            if isinstance(level, dict):
                problems += _level_references(level, f"{prefix}[{index}]", known_groups)
        delays = [level.get("delay", 0) for level in levels if isinstance(level, dict)]
        valid = all(isinstance(d, int) and not isinstance(d, bool) for d in delays)
        if valid and delays != sorted(delays):
            problems.append(f"{where}: level delays must not decrease, got {delays}")
    return problems


POOL_RESERVE_MIN = 8  # Redis connections beyond the engine's that the rest needs


def _pool_budget(config: dict[str, Any]) -> list[str]:
    """The Redis pool must hold the engine's deliveries and the rest of the service: a
    smaller one would make a storm wait on connections the engine itself holds."""
    _, size = _lookup(config, ["redis", "max_connections"])
    _, concurrency = _lookup(config, ["alerts", "escalation", "concurrency"])
    if not isinstance(concurrency, int) or isinstance(concurrency, bool):
        concurrency = 32
    if isinstance(size, int) and not isinstance(size, bool):
        needed = concurrency + POOL_RESERVE_MIN
        if size < needed:
            return [
                f"redis.max_connections: must be at least alerts.escalation.concurrency"
                f" + {POOL_RESERVE_MIN} ({needed}), got {size}"
            ]
    return []


def _level_references(level: dict[str, Any], here: str, groups: set[str] | None) -> list[str]:
    problems = []
    channels = level.get("channels")
    for i, channel in enumerate(channels if isinstance(channels, list) else []):
        if isinstance(channel, str) and channel not in CHANNEL_SCHEMAS:
            problems.append(f"{here}.channels[{i}]: unknown channel {channel!r}")
    named = level.get("groups")
    for i, group in enumerate(named if isinstance(named, list) else []):
        if isinstance(group, str) and groups is not None and group not in groups:
            problems.append(f"{here}.groups[{i}]: unknown recipient group {group!r}")
    return problems
