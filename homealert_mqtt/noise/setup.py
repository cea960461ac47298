"""Puts noise control into a service: the silences' store, cache and timers, the MQTT
commands, the gate in front of the escalation engine, and the ingest hook."""

from __future__ import annotations

from homealert_mqtt.escalation.engine import EscalationEngine
from homealert_mqtt.noise.acks import AckTimeouts
from homealert_mqtt.noise.auto_resolve import AutoResolve
from homealert_mqtt.noise.commands import SilenceCommands
from homealert_mqtt.noise.flapping import FlapSettle
from homealert_mqtt.noise.gate import NoiseGate
from homealert_mqtt.noise.inhibit import RuleIndex
from homealert_mqtt.noise.quiet_hours import QuietPlan
from homealert_mqtt.noise.runtime import SilenceRuntime
from homealert_mqtt.noise.schedules import zone
from homealert_mqtt.noise.store import InhibitCache, SilenceCache, SilenceStore
from homealert_mqtt.service import Service


def add_noise_control(service: Service, engine: EscalationEngine) -> SilenceRuntime:
    store = SilenceStore(service.store, service.clock)
    cache = SilenceCache(store)
    alerts = service.settings.alerts
    inhibit = InhibitCache(service.store, RuleIndex(alerts.inhibit_rules))
    runtime = SilenceRuntime(
        store,
        cache,
        service.store,
        service.publisher,
        service.clock,
        schedules=alerts.schedules,
        zone=zone(alerts.timezone),
        inhibit=inhibit,
        acks=AckTimeouts(
            service.store, service.publisher, alerts.escalation.ack_timeout, service.clock
        ),
        auto_resolve=AutoResolve(service.store, service.publisher, service.clock)
        if any(t.auto_resolve for t in alerts.types.values())
        else None,
        flaps=FlapSettle(service.store, service.publisher, service.clock)
        if any(t.flap_reopens for t in alerts.types.values())
        else None,
    )
    commands = SilenceCommands(
        runtime, service.store, service.publisher, service.topics, service.clock
    )
    filters = service.topics.silence_filters()
    service.add_subscription(filters["set"], commands.on_set)
    service.add_subscription(filters["expire"], commands.on_expire)
    service.add_subscription(filters["snooze"], commands.on_snooze)
    # First: its resync registers the silences' Home Assistant entities before the
    # Home Assistant listener's resync starts the clean-up of stale ones.
    service.publisher.listeners.insert(0, runtime)
    service.add_task(runtime.run)
    settings = service.settings
    quiet = QuietPlan(
        alerts.escalation, settings.recipients, settings.quiet_hours, zone(alerts.timezone)
    )
    engine.gate = NoiseGate(
        cache, inhibit, store, runtime.announce, service.clock, quiet_hours=quiet
    )
    service.ingest.silences_for = engine.gate.quiet_for
    return runtime
