"""Home Assistant discovery in the running service: the bridge, fed through its seams.

- `HomeAssistantListener` (a `StateListener`): new alerts get their entities, lifecycle
  events go to `<base>/ha/event`, removed alerts lose their entities, and every resync
  after the first re-sends all configs (the broker may have lost its retained ones).
  A count bump of a known alert costs one set look-up and publishes nothing.
- `<prefix>/status` is an extra subscription of the service's inbound session: HA's
  birth (`online`) re-sends every config. Re-sends run in the service task
  `home_assistant`, off the pipeline's path.
- At start, `clean_up_stale_configs()` learns which of our configs are retained on the
  broker and, once the first resync has published every stored alert, clears those
  that no longer belong to an alert (Zigbee2MQTT's start-up clean-up).

The retained configs are read on a short-lived connection of its own rather than
through the inbound session: there, the subscription would stay for good and echo
every config we publish back into the alert queue (splitting alert batches), and under
a shared subscription (`mqtt.shared_group`) the broker sends no retained messages at
all. The end of the retained burst is found with a sentinel: the broker queues a
subscription's retained messages before it reads our next packet, so a message we
publish after the SUBACK comes back after all of them. No sleeping, no guessing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import aiomqtt
from redis.exceptions import RedisError

from homealert_mqtt import __version__
from homealert_mqtt.mqtt.backoff import Backoff
from homealert_mqtt.mqtt.client_options import client_kwargs
from homealert_mqtt.pipeline.publish import StateListener
from homealert_mqtt.store.ha_removed import RemovedEntities

from .bridge import DiscoveryBridge
from .diagnostics import DiagnosticsPublisher
from .discovery import HA_EVENT_TYPES, DiscoverySettings

if TYPE_CHECKING:
    from homealert_mqtt.config.settings import MqttSettings, Settings
    from homealert_mqtt.models import AlertRecord
    from homealert_mqtt.mqtt.link import Inbound, Resolver
    from homealert_mqtt.service import Service

_LOGGER = logging.getLogger(__name__)

# Upper bound on the wait for the sentinel. Past it, what was learned is used: knowing
# fewer retained configs only means fewer stale ones cleared, never a live one.
SCAN_TIMEOUT: Final = 30.0
_HA_EVENTS: Final = frozenset(HA_EVENT_TYPES)
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - compared, not bound


def event_fields(alert: AlertRecord) -> dict[str, Any]:
    """What `ha_event_payload` reads from an alert."""
    return {
        "id": alert.id,
        "priority": alert.priority.value,
        "source": alert.source,
        "type": alert.type,
        "message": alert.message,
        "escalation_level": alert.escalation_level,
    }


class HomeAssistantListener(StateListener):
    """Feeds the bridge from the publisher's hooks and HA's status topic.

    Re-sending every config (HA's birth, a reconnect) is left to `resend_loop()`, a
    task of its own: thousands of publishes must hold up neither the pipeline (where
    HA's status arrives) nor the outbound connect (where a resync ends).
    """

    def __init__(self, bridge: DiscoveryBridge) -> None:
        self.bridge = bridge
        # Set after the first resync: by then every stored alert has its configs.
        self.first_resync = asyncio.Event()
        self.published_ids: set[str] = set()
        self._resend_due = asyncio.Event()

    async def alert_changed(self, alert: AlertRecord, events: Sequence[str]) -> None:
        bridge = self.bridge
        if not bridge.knows(alert.id):
            await bridge.alert_changed({"id": alert.id, "source": alert.source, "type": alert.type})
        for name in events:
            if name in _HA_EVENTS:
                await bridge.on_event(name, event_fields(alert))

    async def alert_removed(self, alert_id: str) -> None:
        await self.bridge.alert_removed(alert_id)

    async def resynced(self, alert_ids: Sequence[str]) -> None:
        if self.first_resync.is_set():
            # A reconnect: perhaps to a broker restarted without its retained messages.
            self._resend_due.set()
            return
        await self.bridge.announce_service()
        self.published_ids = set(alert_ids)
        self.first_resync.set()

    async def on_ha_status(self, message: Inbound) -> None:
        """`<prefix>/status`: HA's birth (`online`) asks for every config again."""
        if self.bridge.ha_status(message.payload):
            self._resend_due.set()

    async def resend_loop(self) -> None:
        while True:
            await self._resend_due.wait()
            self._resend_due.clear()
            await self.bridge.resend_all()
            try:
                await self.bridge.clear_ghosts()
            except (RedisError, OSError):
                # Again once the task is restarted (with backoff): HA's birth came once.
                self._resend_due.set()
                raise


async def read_retained_configs(
    mqtt: MqttSettings,
    resolve: Resolver,
    bridge: DiscoveryBridge,
    *,
    timeout: float = SCAN_TIMEOUT,  # noqa: ASYNC109 - a bound with a fallback, not a cancel
) -> int:
    """Feed our retained configs to `bridge.on_retained_config`; returns how many."""
    address = await resolve()
    sentinel = f"{bridge.settings.base_topic}/ha/scan/{uuid.uuid4().hex}"
    kwargs = client_kwargs(
        mqtt,
        address.host,
        address.port,
        client_id=f"homealert-scan-{uuid.uuid4().hex[:12]}",
        persistent=False,
    )
    found = 0
    async with aiomqtt.Client(**kwargs) as client:
        await client.subscribe([(bridge.retained_config_filter, 1), (sentinel, 1)])
        await client.publish(sentinel, b"end of retained configs", qos=1)
        try:
            async with asyncio.timeout(timeout):
                async for message in client.messages:
                    topic = message.topic.value
                    if topic == sentinel:
                        break
                    if message.retain and isinstance(message.payload, bytes):
                        bridge.on_retained_config(topic, message.payload)
                        found += 1
        except TimeoutError:
            _LOGGER.warning(
                "read %d retained discovery configs; the rest did not come within %.0f s "
                "(is the broker's max_queued_messages too low?)",
                found,
                timeout,
            )
    return found


async def clean_up_stale_configs(
    mqtt: MqttSettings,
    resolve: Resolver,
    bridge: DiscoveryBridge,
    ready: asyncio.Event,
    published_ids: Callable[[], set[str]],
) -> None:
    """Learn our retained configs, wait for `ready` (the first resync), clear the stale."""
    backoff = Backoff(initial=1.0, cap=30.0)
    while True:
        try:
            found = await read_retained_configs(mqtt, resolve, bridge)
            break
        except aiomqtt.MqttError as err:
            delay = backoff.next_delay()
            _LOGGER.warning(
                "cannot read the retained discovery configs (%s); trying again in %.1f s",
                err,
                delay,
            )
            await asyncio.sleep(delay)
    _LOGGER.debug("found %d retained Home Assistant discovery configs of ours", found)
    await ready.wait()
    await bridge.clear_stale(published_ids())


def install(service: Service, resolve: Resolver) -> DiscoveryBridge:
    """Wire Home Assistant discovery into `service` (call before `service.run()`).

    With `homeassistant.discovery: false` only the start-up clean-up runs: it clears
    the configs an earlier run published, so turning discovery off removes the
    entities from Home Assistant.
    """
    ha = service.settings.homeassistant
    mqtt = service.settings.mqtt
    settings = DiscoverySettings(
        base_topic=mqtt.base_topic,
        prefix=ha.discovery_prefix,
        sw_version=__version__,
        configuration_url=configuration_url(service.settings),
    )
    bridge = DiscoveryBridge(
        service.outbound.publish,
        settings,
        enabled=ha.discovery,
        removed=RemovedEntities(service.redis, service.keys, service.clock),
    )
    if not ha.discovery:

        async def home_assistant_cleanup() -> None:
            # Nothing is published, so nothing to wait for but a connection to send on.
            await clean_up_stale_configs(mqtt, resolve, bridge, service.outbound.connected, set)

        service.add_task(home_assistant_cleanup)
        return bridge

    listener = HomeAssistantListener(bridge)
    service.add_listener(listener)
    diagnostics = DiagnosticsPublisher(
        service.outbound.publish,
        settings.diagnostics_topic,
        version=__version__,
        redis_ok=lambda: service.redis_ok,
        clock=service.clock,
    )
    service.add_listener(diagnostics)
    service.add_subscription(bridge.status_topic, listener.on_ha_status)
    cleaned = False

    async def home_assistant() -> None:
        nonlocal cleaned
        if not cleaned:  # once, even if this task is restarted
            await clean_up_stale_configs(
                mqtt, resolve, bridge, listener.first_resync, lambda: listener.published_ids
            )
            cleaned = True
        await listener.resend_loop()

    async def home_assistant_diagnostics() -> None:
        await service.outbound.connected.wait()
        await diagnostics.run()

    service.add_task(home_assistant)
    service.add_task(home_assistant_diagnostics)
    return bridge


def configuration_url(settings: Settings) -> str | None:
    """The device's "Visit" link: as configured, else the health endpoint when it is on."""
    configured = settings.homeassistant.configuration_url
    if configured or not settings.http.enabled:
        return configured
    host = settings.http.host
    if host in _WILDCARD_HOSTS:
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{settings.http.port}/healthz"
