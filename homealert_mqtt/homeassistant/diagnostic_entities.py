"""The service device's diagnostic entities: broker and Redis connection, version, last
error (what `<base>/status` and `<base>/diagnostics` say; see diagnostics.py).

Under the device's Diagnostic section (`entity_category: diagnostic`), as HA shows a
bridge's own health apart from what it is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .discovery import DiscoverySettings

# (component, key) -> unique_id and the entity id hints, as discovery.py makes them
Ids = Callable[[str, str], dict[str, str]]


def diagnostic_components(settings: DiscoverySettings, ids: Ids) -> dict[str, dict[str, Any]]:
    diagnostics = settings.diagnostics_topic
    common = {"entity_category": "diagnostic"}
    return {
        "broker": {
            "platform": "binary_sensor",
            "name": "Broker connection",
            **ids("binary_sensor", "broker"),
            # The service's own status (its last will says offline). No availability:
            # "disconnected" is the answer here, not "unavailable".
            "availability": [],
            "state_topic": f"{settings.base_topic}/status",
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
            **common,
        },
        "redis": {
            "platform": "binary_sensor",
            "name": "Redis connection",
            **ids("binary_sensor", "redis"),
            "state_topic": diagnostics,
            "value_template": "{{ 'ON' if value_json.redis == 'connected' else 'OFF' }}",
            "device_class": "connectivity",
            **common,
        },
        "version": {
            "platform": "sensor",
            "name": "Version",
            **ids("sensor", "version"),
            "state_topic": diagnostics,
            "value_template": "{{ value_json.version }}",
            "icon": "mdi:tag-outline",
            **common,
        },
        "last_error": {
            "platform": "sensor",
            "name": "Last error",
            **ids("sensor", "last_error"),
            "state_topic": diagnostics,
            # A state is at most 255 characters; the whole report is in the attributes.
            "value_template": (
                "{{ (value_json.last_error.error if value_json.last_error else 'none')[:255] }}"
            ),
            "json_attributes_topic": diagnostics,
            "json_attributes_template": "{{ (value_json.last_error or {}) | tojson }}",
            "icon": "mdi:alert-circle-outline",
            **common,
        },
    }
