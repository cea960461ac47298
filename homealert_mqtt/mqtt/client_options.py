"""aiomqtt client construction from settings: protocol, TLS, credentials, socket options."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from homealert_mqtt.config.settings import MqttSettings

# A week: alerts published while the service is down wait this long in the broker.
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    if not settings.tls.enabled:
        return None
    context = ssl.create_default_context(cafile=settings.tls.ca_certs)
    if settings.tls.certfile:
        context.load_cert_chain(settings.tls.certfile, settings.tls.keyfile)
    if settings.tls.insecure:
        context.check_hostname = False
    return context


def client_kwargs(
    settings: MqttSettings, host: str, port: int, *, client_id: str, persistent: bool
) -> dict[str, Any]:
    """Keyword arguments for aiomqtt.Client shared by both connections."""
    v5 = settings.protocol == 5
    kwargs: dict[str, Any] = {
        "hostname": host,
        "port": port,
        "identifier": client_id,
        "username": settings.username,
        "password": settings.password,
        "keepalive": settings.keepalive,
        "protocol": aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        "tls_context": tls_context(settings),
        # One connection both reads and writes small packets: without NODELAY, Nagle and
        # delayed ACKs add ~40 ms to every alert.
        "socket_options": [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        "timeout": 10,
    }
    if settings.tls.enabled and settings.tls.insecure:
        kwargs["tls_insecure"] = True
    if v5:
        # clean_start=False plus a session expiry keeps subscriptions and queued QoS 1
        # messages across restarts; aiomqtt's default cleans the first session.
        kwargs["clean_start"] = not persistent
        if persistent:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
            kwargs["properties"] = props
    else:
        kwargs["clean_session"] = not persistent
    return kwargs
