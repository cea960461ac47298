"""Keeps Home Assistant's view of the service in step with the alerts.

`DiscoveryBridge` decides *when* to publish the messages `discovery.py` builds; the
MQTT client stays outside (a `publish` callable is passed in), so the bridge is cheap
to test and has no connection state of its own. `runtime.py` wires it into the
running service:

1. at start: a short-lived connection subscribes to `<prefix>/+/<node_id>/+/config`
   and feeds each retained message to `on_retained_config()`; `<prefix>/status`
   payloads go to `on_ha_status()` for as long as the service runs;
2. after the first resync: `announce_service()` (every alert whose retained state
   was published went through `alert_changed(state)` during the resync), then
   `clear_stale(ids of those alerts)`; after a later resync (a reconnect, perhaps to
   a broker that lost its retained messages) `resend_all()`;
3. on every alert state published: `alert_changed(state)` (a set look-up when the
   alert is already known); on every lifecycle event: `on_event(name, state)`;
4. when an alert's retained state is cleared (end of retention):
   `alert_removed(alert_id)`: HA deletes its entities;
5. after HA's birth message: `clear_ghosts()`. HA deletes an entity only when the empty
   config comes on a topic it discovered since it started; one sent while HA was down
   leaves the entity in HA's registry for good. So alerts removed while HA was not
   known to be online are remembered (`RemovedMemory`, in Redis), and after the birth
   each is discovered once more and removed at once: HA deletes it for real.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from .discovery import (
    DiscoveryMessage,
    DiscoverySettings,
    alert_config_topics,
    alert_id_of_config,
    alert_messages,
    ha_event_payload,
    parse_config_topic,
    remove_alert,
    service_config_topic,
    service_messages,
)

_LOGGER = logging.getLogger(__name__)

# publish(topic, payload, qos, retain)
Publish = Callable[[str, bytes, int, bool], Awaitable[None]]

CONFIG_QOS: Final = 1
EVENT_QOS: Final = 1


class RemovedMemory(Protocol):
    """Alert ids whose entities HA may still hold (store/ha_removed.py)."""

    async def remember(self, alert_ids: Sequence[str]) -> None: ...

    async def recall(self) -> list[str]: ...

    async def forget(self, alert_ids: Sequence[str]) -> None: ...


class DiscoveryBridge:
    """Publishes discovery configs once per alert, re-sends them when HA restarts."""

    def __init__(
        self,
        publish: Publish,
        settings: DiscoverySettings,
        *,
        enabled: bool = True,
        removed: RemovedMemory | None = None,
    ) -> None:
        self._publish = publish
        self.settings = settings
        self.enabled = enabled
        self._removed = removed
        # alert id -> its config messages, kept to re-send on HA's birth message
        self._alerts: dict[str, list[DiscoveryMessage]] = {}
        # More entities of other parts (a silence's), by a key of theirs: re-sent and
        # kept by the start-up clean-up as the alerts' are.
        self._extra: dict[str, list[DiscoveryMessage]] = {}
        self._service_announced = False
        # Config topics of ours found retained on the broker at start.
        self._retained: set[str] = set()
        # None until HA's status topic says something: its birth message is not
        # retained by default, so a service started after HA never sees one.
        self._ha_status: str | None = None
        # Every config publish goes through this lock: a re-send after HA's birth must
        # not re-create an alert that `alert_removed` is clearing at the same moment.
        self._lock = asyncio.Lock()

    @property
    def known_alerts(self) -> frozenset[str]:
        return frozenset(self._alerts)

    def knows(self, alert_id: str) -> bool:
        """Whether the alert's configs were sent (nothing to do for it but events)."""
        return alert_id in self._alerts

    @property
    def status_topic(self) -> str:
        """HA's birth/last-will topic, to subscribe to."""
        return f"{self.settings.prefix}/status"

    @property
    def retained_config_filter(self) -> str:
        """Subscription filter for our retained configs (start-up window)."""
        return f"{self.settings.prefix}/+/{self.settings.node_id}/+/config"

    async def announce_service(self) -> None:
        if not self.enabled:
            return
        async with self._lock:
            await self._send(service_messages(self.settings))
            self._service_announced = True

    async def alert_changed(self, state: Mapping[str, Any]) -> None:
        """Publish an alert's configs the first time it is seen; no-op afterwards.

        Every alert whose state is published gets entities, resolved ones too: they
        go away with the retained state (`alert_removed`), as the contract says.
        """
        if not self.enabled:
            return
        alert_id = str(state["id"])
        if alert_id in self._alerts:
            return
        messages = alert_messages(self.settings, state)
        self._alerts[alert_id] = messages
        # Without the lock: a new alert must not wait for a re-send of thousands of
        # configs (it runs on the pipeline's path). Nothing it could race with matters:
        # a re-send repeats the same configs, and a removal comes at the end of a
        # retention (a second at least), long after these were handed to the client.
        await self._send(messages)

    async def alert_removed(self, alert_id: str) -> None:
        """Empty the alert's retained configs: HA deletes its entities."""
        if not self.enabled:
            return
        async with self._lock:
            self._alerts.pop(alert_id, None)
            await self._send(remove_alert(self.settings, alert_id))
        await self._remember_unseen([alert_id])

    async def _remember_unseen(self, alert_ids: Sequence[str]) -> None:
        """Keep removals HA may have missed: unless its last word was its birth."""
        if self._removed is not None and alert_ids and self._ha_status != "online":
            await self._removed.remember(alert_ids)

    async def clear_ghosts(self) -> int:
        """After HA's birth: remove for real the entities of alerts removed while it was
        away (discovered again, then emptied; HA handles both in order). Returns how many.
        """
        if self._removed is None or not self.enabled or self._ha_status != "online":
            return 0
        remembered = await self._removed.recall()
        ghosts = [alert_id for alert_id in remembered if alert_id not in self._alerts]
        if ghosts:
            _LOGGER.info(
                "removing from Home Assistant the entities of %d alerts that ended while "
                "it was away",
                len(ghosts),
            )
            async with self._lock:
                for alert_id in ghosts:
                    await self._send(alert_messages(self.settings, {"id": alert_id}))
                    await self._send(remove_alert(self.settings, alert_id))
        await self._removed.forget(remembered)
        return len(ghosts)

    async def extra_changed(self, key: str, messages: list[DiscoveryMessage]) -> None:
        """Publish (or re-publish) another part's entity configs under `key`."""
        if not self.enabled:
            return
        async with self._lock:
            self._extra[key] = messages
            await self._send(messages)

    async def extra_removed(self, key: str) -> None:
        """Empty the retained configs published under `key`: HA deletes the entities."""
        if not self.enabled:
            return
        async with self._lock:
            messages = self._extra.pop(key, [])
            await self._send([DiscoveryMessage(m.topic, None) for m in messages])

    async def on_ha_status(self, payload: bytes) -> None:
        """HA's birth (`online`) or last will (`offline`) on `<prefix>/status`.

        On `online` every config is sent again: HA may have lost its discovered
        entities (a broker without persistence, or a user who deleted retained
        topics), and re-sending identical configs is harmless.
        """
        if self.ha_status(payload):
            await self.resend_all()

    def ha_status(self, payload: bytes) -> bool:
        """Record HA's status; True when every config should be sent again (`online`).

        For a caller that sends them later, off the path the status arrived on.
        """
        status = payload.decode("utf-8", "replace").strip()
        self._ha_status = status
        if status != "online" or not self.enabled:
            return False
        _LOGGER.info("Home Assistant is online")
        return True

    async def resend_all(self) -> None:
        """Send the service's config and every known alert's configs again."""
        if not self.enabled:
            return
        async with self._lock:
            _LOGGER.info(
                "sending Home Assistant discovery for the service and %d alerts",
                len(self._alerts),
            )
            await self._send(service_messages(self.settings))
            self._service_announced = True
            for messages in [*self._alerts.values(), *self._extra.values()]:
                await self._send(messages)

    async def on_event(self, event_name: str, alert_state: Mapping[str, Any]) -> None:
        """Forward a lifecycle event to HA's event entity (not retained).

        Published unless HA's last word was `offline`. Waiting for a birth message
        instead would drop every event of a service started after HA (the birth is
        not retained by default); an event nobody is subscribed to is simply
        discarded by the broker, so publishing early costs nothing.
        """
        if not self.enabled or self._ha_status == "offline":
            return
        payload = ha_event_payload(event_name, alert_state)
        if payload is None:
            return
        await self._publish(self.settings.event_topic, payload, EVENT_QOS, False)

    def on_retained_config(self, topic: str, payload: bytes) -> None:
        """Record one of our configs found on the broker (start-up window)."""
        parsed = parse_config_topic(topic)
        if parsed is None:
            return
        component, node_id, object_id = parsed
        # Exactly our prefix and node: the prefix may itself contain slashes.
        if topic != f"{self.settings.prefix}/{component}/{node_id}/{object_id}/config":
            return
        if node_id != self.settings.node_id:
            return
        if payload:
            self._retained.add(topic)
        else:
            self._retained.discard(topic)

    async def clear_stale(self, alert_ids: set[str]) -> None:
        """Clear every recorded config that should no longer exist.

        `alert_ids`: the alerts whose state is still published. Anything else of
        ours (configs of alerts gone while the service was down, entities an older
        version published) gets an empty retained payload, as Zigbee2MQTT does. With
        discovery disabled nothing is expected, so turning it off removes the
        entities from HA at the next start.
        """
        expected: set[str] = set()
        if self.enabled:
            prefix, node_id = self.settings.prefix, self.settings.node_id
            expected.add(service_config_topic(prefix, node_id))
            for alert_id in alert_ids | set(self._alerts):
                expected.update(alert_config_topics(prefix, node_id, alert_id))
            expected.update(m.topic for messages in self._extra.values() for m in messages)
        stale = sorted(self._retained - expected)
        self._retained.clear()
        if not stale:
            return
        _LOGGER.info("Clearing %d stale Home Assistant discovery configs", len(stale))
        async with self._lock:
            await self._send([DiscoveryMessage(topic, None) for topic in stale])
        if self.enabled:
            gone = {alert_id_of_config(topic, self.settings) for topic in stale}
            await self._remember_unseen(sorted(i for i in gone if i is not None))

    async def _send(self, messages: list[DiscoveryMessage]) -> None:
        for message in messages:
            await self._publish(message.topic, message.encode(), CONFIG_QOS, message.retain)
