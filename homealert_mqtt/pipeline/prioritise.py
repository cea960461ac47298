"""Step 3: the alert's priority: an explicit `priority` wins, else the severity map."""

from __future__ import annotations

from homealert_mqtt.models import IncomingAlert, Priority


def prioritise(
    alert: IncomingAlert, severity_map: dict[str, Priority], default: Priority
) -> Priority:
    if alert.explicit_priority is not None:
        return alert.explicit_priority
    return severity_map.get(alert.severity or "", default)
