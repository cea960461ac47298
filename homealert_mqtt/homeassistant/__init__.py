"""Home Assistant MQTT discovery: pure message builders and the runtime bridge."""

from .bridge import DiscoveryBridge, Publish
from .discovery import (
    DiscoveryMessage,
    DiscoverySettings,
    alert_config_topics,
    alert_messages,
    ha_event_payload,
    node_id_for,
    parse_config_topic,
    remove_alert,
    service_messages,
)

__all__ = [
    "DiscoveryBridge",
    "DiscoveryMessage",
    "DiscoverySettings",
    "Publish",
    "alert_config_topics",
    "alert_messages",
    "ha_event_payload",
    "node_id_for",
    "parse_config_topic",
    "remove_alert",
    "service_messages",
]
