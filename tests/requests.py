"""IngestRequests built by hand, for tests that drive the Lua scripts directly."""

from __future__ import annotations

from typing import Any

from homealert_mqtt.store.alert_store import IngestRequest


def bare_request(name: str, **fields: Any) -> IngestRequest:
    """A firing P5 alert of type `name`, ungrouped, outside any MQTT session; `fields`
    override any of IngestRequest's fields."""
    base: dict[str, Any] = {
        "fingerprint": f"fp-{name}",
        "base_id": name,
        "status": "firing",
        "source": "s",
        "type": name,
        "severity": "",
        "priority": "P5",
        "message": "",
        "attributes_json": "{}",
        "timestamp_ms": None,
        "group_key_hash": "",
        "group_key_text": "",
        "base_group_id": "",
        "client_id": "",
        "mid": 0,
        "dup": False,
        "digest": "",
    }
    return IngestRequest(**{**base, **fields})
