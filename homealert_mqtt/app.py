"""Builds the service with every optional part the settings ask for."""

from __future__ import annotations

from typing import Any

from zeroconf import InterfaceChoice

from homealert_mqtt import __version__, observability
from homealert_mqtt.config.settings import Settings
from homealert_mqtt.escalation.setup import add_escalation
from homealert_mqtt.homeassistant import runtime as home_assistant
from homealert_mqtt.homeassistant.bridge import DiscoveryBridge
from homealert_mqtt.homeassistant.silences import SilenceEntities
from homealert_mqtt.mqtt.link import Resolver, static_resolver
from homealert_mqtt.noise.setup import add_noise_control
from homealert_mqtt.notify.clear import ClearPaged
from homealert_mqtt.notify.sms_replies import add_sms_replies
from homealert_mqtt.observability import NotificationCounter
from homealert_mqtt.presence.setup import add_presence
from homealert_mqtt.service import Service
from homealert_mqtt.zeroconf_discovery import (
    Interfaces,
    ServiceAnnouncer,
    ZeroconfResolver,
    announce_while_running,
)


def build_service(settings: Settings, **kwargs: Any) -> Service:
    resolver: Resolver = kwargs.pop("resolver", None) or _broker_resolver(settings)
    service = Service(settings, resolver=resolver, **kwargs)
    bridge = _add_home_assistant(service, resolver)
    _add_zeroconf_announcement(service)
    counter = _add_metrics(service)
    engine = add_escalation(service)
    service.noise = add_noise_control(service, engine)
    if settings.homeassistant.discovery:
        service.noise.silence_listeners.append(SilenceEntities(bridge))
    engine.delivery.on_sent.append(counter.notification_sent)
    engine.delivery.on_failed.append(counter.notification_failed)
    if "mqtt" in engine.delivery.channels:
        # Close the loop on <base>/notify/<group> (notify/clear.py)
        service.add_listener(
            ClearPaged(engine.store, settings.mqtt.base_topic, service.outbound.publish)
        )
    add_presence(service)
    add_sms_replies(service)
    return service


# -- zeroconf, Home Assistant, metrics -------------------------------------------------


def _broker_resolver(settings: Settings) -> Resolver:
    """`mqtt.url: auto`: browse mDNS for the broker (until one answers); else the URL."""
    if not settings.mqtt.discover:
        return static_resolver(settings.mqtt)
    return ZeroconfResolver(
        settings.mqtt.broker_name,
        browse_timeout=settings.zeroconf.browse_timeout,
        interfaces=_mdns_interfaces(settings),
    )


def _mdns_interfaces(settings: Settings) -> Interfaces:
    chosen = settings.zeroconf.interfaces
    return list(chosen) if chosen else InterfaceChoice.All


def _add_zeroconf_announcement(service: Service) -> None:
    """`_homealert._tcp.local.` while the service runs (`zeroconf.announce`)."""
    settings = service.settings
    if not settings.zeroconf.announce:
        return

    async def zeroconf_announcement() -> None:
        announcer = ServiceAnnouncer(
            version=__version__,
            base_topic=settings.mqtt.base_topic,
            # The SRV port: where the HTTP health endpoint listens, if it does.
            port=settings.http.port if settings.http.enabled else 0,
            name=_instance_name(settings.mqtt.client_id),
            interfaces=_mdns_interfaces(settings),
        )
        await announce_while_running(announcer)

    service.add_task(zeroconf_announcement)


def _instance_name(client_id: str) -> str:
    """One DNS-SD instance per replica (the client id is unique per replica); 63 bytes."""
    return f"HomeAlert {client_id}".encode()[:63].decode("utf-8", "ignore")


def _add_home_assistant(service: Service, resolver: Resolver) -> DiscoveryBridge:
    """MQTT discovery (`homeassistant.discovery`), and the start-up clean-up either way."""
    return home_assistant.install(service, resolver)


def _add_metrics(service: Service) -> NotificationCounter:
    """Metrics, /healthz and /metrics (`http.enabled`).

    Returns what the escalation engine reports notifications to:
    `notification_sent(channel)` / `notification_failed(channel)` (no-ops when off).
    """
    return observability.install(service)
