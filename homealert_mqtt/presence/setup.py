"""Puts presence into a service: subscriptions, the deadline loop, `<base>/presence`."""

from __future__ import annotations

from homealert_mqtt.escalation.plan import Start
from homealert_mqtt.models import Priority
from homealert_mqtt.presence.deadlines import Deadlines
from homealert_mqtt.presence.topic import PresenceTopic
from homealert_mqtt.presence.watchers import AvailabilityWatcher, HeartbeatWatcher
from homealert_mqtt.service import Service
from homealert_mqtt.store.presence_store import PresenceStore


def add_presence(service: Service) -> PresenceTopic | None:
    settings = service.settings
    presence = settings.presence
    if not presence.enabled:
        return None
    store = PresenceStore(service.store, service.clock)
    base = settings.mqtt.base_topic
    topic = PresenceTopic(f"{base}/presence", store, service.outbound.publish)
    service.add_listener(topic)
    service.add_task(topic.run)
    for source in presence.availability:
        watcher = AvailabilityWatcher(source, store, topic.changed)
        service.add_subscription(source.topic, watcher.handle, shared=False)
    if presence.heartbeats:
        heartbeats = HeartbeatWatcher(
            presence.heartbeats, store, topic.changed, service.publisher.error, f"{base}/heartbeat/"
        )
        service.add_subscription(f"{base}/heartbeat/+", heartbeats.handle)

    def start_plan() -> dict[Priority, Start]:
        return dict(service.ingest.start_plan)

    deadlines = Deadlines(
        presence=store,
        alerts=service.store,
        publisher=service.publisher,
        settings=settings.alerts,
        start_plan=start_plan,
        lease_ms=settings.alerts.escalation.lease * 1000,
        clock=service.clock,
        changed=topic.changed,
        outage=service.redis_outage,
    )

    async def presence_deadlines() -> None:
        if presence.heartbeats:
            await heartbeats.watch_all()
        await deadlines.run()

    service.add_task(presence_deadlines)
    return topic
