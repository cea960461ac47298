"""Step 2: the fingerprint that makes repeats one alert, and the ids derived from it."""

from __future__ import annotations

import hashlib
import json
import json.encoder
import re
from dataclasses import dataclass

from homealert_mqtt.models import IncomingAlert
from homealert_mqtt.store.alert_store import PartialMatch

_NOT_ID = re.compile(r"[^a-z0-9_-]+")
SLUG_CHARS = 32


@dataclass(frozen=True, slots=True)
class Identity:
    fingerprint: str
    base_id: str  # the alert id before any occurrence suffix ("-2", "-3", ...)


@dataclass(frozen=True, slots=True)
class GroupIdentity:
    key_hash: str
    key_text: str
    base_group_id: str


def field_value(alert: IncomingAlert, name: str) -> str:
    """A dedup/grouping attribute: a top-level field, or `attributes.<name>`."""
    if name.startswith("attributes."):
        value = alert.attributes.get(name[len("attributes.") :])
    elif name in ("source", "type", "severity", "message", "status", "dedup_key"):
        value = getattr(alert, name)
    elif name == "priority":
        value = alert.explicit_priority.value if alert.explicit_priority else None
    else:
        value = alert.attributes.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# Fingerprint fields kept as they are in an alert's Redis hash. `status` and `dedup_key`
# are not comparable there and are left out of a partial match.
_HASH_FIELDS = frozenset({"source", "type", "severity", "message", "priority"})


def partial_match(alert: IncomingAlert, dedup_attributes: tuple[str, ...]) -> PartialMatch | None:
    """For a resolve that leaves out fingerprint fields: what an open alert must have to
    be resolved by it (the fields it gives, and always its source: a device resolves only
    its own alerts). None for a resolve with the whole fingerprint (or a dedup_key)."""
    if alert.status != "resolved" or alert.dedup_key is not None:
        return None
    given = [name for name in dedup_attributes if field_value(alert, name) != ""]
    if len(given) == len(dedup_attributes):
        return None
    fields = {"source": alert.source}
    attrs: dict[str, object] = {}
    for name in given:
        if name in _HASH_FIELDS:
            fields[name] = field_value(alert, name)
        elif name not in ("status", "dedup_key"):
            key = name.removeprefix("attributes.")
            attrs[key] = alert.attributes[key]
    return PartialMatch(tuple(fields.items()), tuple(attrs.items()))


def slug(text: str, limit: int = SLUG_CHARS) -> str:
    return _NOT_ID.sub("_", text.lower())[:limit].strip("_-")


def identify(alert: IncomingAlert, dedup_attributes: tuple[str, ...]) -> Identity:
    if alert.dedup_key is not None:
        material = "key\x00" + alert.dedup_key
    else:
        values = [field_value(alert, name) for name in dedup_attributes]
        material = "attrs\x00" + _names_and_values(dedup_attributes, values)
    fp = hashlib.sha256(material.encode()).hexdigest()[:32]
    readable = "-".join(filter(None, (slug(alert.source), slug(alert.type))))
    base_id = f"{readable}-{fp[:8]}" if readable else f"a-{fp[:8]}"
    if not base_id[0].isalnum():
        base_id = "a" + base_id
    return Identity(fingerprint=fp, base_id=base_id)


def _names_and_values(names: tuple[str, ...], values: list[str]) -> str:
    """`json.dumps([list(names), values])`, byte for byte: stored fingerprints must never
    change. Built from quoted strings, it skips the ~1.5 µs of json.dumps' setup."""
    quote = json.encoder.encode_basestring_ascii
    return f"[[{', '.join(map(quote, names))}], [{', '.join(map(quote, values))}]]"


def group_identity(alert: IncomingAlert, attributes: tuple[str, ...]) -> GroupIdentity:
    values = [field_value(alert, name) for name in attributes]
    text = ",".join([f"{name}={value}" for name, value in zip(attributes, values, strict=True)])
    key_hash = hashlib.sha256(text.encode()).hexdigest()[:16]
    readable = slug("-".join(filter(None, values)), 48)
    base = f"g-{readable}-{key_hash[:6]}" if readable else f"g-{key_hash[:6]}"
    return GroupIdentity(key_hash=key_hash, key_text=text[:512], base_group_id=base)
