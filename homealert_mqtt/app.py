"""Builds the service with every optional part the settings ask for."""

from __future__ import annotations

from typing import Any

from homealert_mqtt.config.settings import Settings
from homealert_mqtt.escalation.setup import add_escalation
from homealert_mqtt.service import Service


def build_service(settings: Settings, **kwargs: Any) -> Service:
    service = Service(settings, **kwargs)
    add_escalation(service)
    return service
