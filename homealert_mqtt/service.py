"""The running service: wires the store, the pipeline and the MQTT links, and supervises them.

Every long-running part is a task in one TaskGroup; a part that fails logs and restarts
rather than taking the house's alerting down with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from paho.mqtt.client import topic_matches_sub
from redis.asyncio import Redis
from redis.exceptions import RedisError

from homealert_mqtt import __version__
from homealert_mqtt.clock import Clock, wall_ms
from homealert_mqtt.config.settings import Settings
from homealert_mqtt.mqtt.backoff import Backoff
from homealert_mqtt.mqtt.link import Inbound, InboundLink, OutboundLink, Resolver, static_resolver
from homealert_mqtt.pipeline.commands import CommandHandler
from homealert_mqtt.pipeline.ingest import Ingest
from homealert_mqtt.pipeline.publish import StateListener, StatePublisher
from homealert_mqtt.pipeline.validate import Limits
from homealert_mqtt.redis_client import make_redis, pool_size, wait_for_redis
from homealert_mqtt.store.alert_store import AlertStore
from homealert_mqtt.store.keys import Keys
from homealert_mqtt.store.sessions import BrokerSessions
from homealert_mqtt.topics import Topics
from homealert_mqtt.transient import RETRY_CAP, RETRY_INITIAL, Outage, is_transient

_LOGGER = logging.getLogger(__name__)

BATCH_MAX = 1024  # messages taken from the queue at once: Ingest pipelines within one batch
SWEEP_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TTL = 30


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = wall_ms,
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.topics = Topics(settings.mqtt.base_topic)
        self.keys = Keys.for_prefix(settings.redis.key_prefix)
        self.redis: Redis = make_redis(
            settings.redis,
            max_connections=pool_size(settings.redis, settings.alerts.escalation.concurrency),
        )
        # Every part that talks to Redis reports to this one: an outage is one warning,
        # a reminder now and then, and one line when Redis is back.
        self.redis_outage = Outage("Redis")
        self.redis_outage.on_change(self._redis_changed)
        self.store = AlertStore(self.redis, self.keys, settings.alerts, clock)
        self.queue: asyncio.Queue[Inbound] = asyncio.Queue()
        resolve = resolver or static_resolver(settings.mqtt)
        self.broker_outage = Outage("MQTT broker")
        self.outbound = OutboundLink(
            settings.mqtt,
            resolve,
            self.topics.status,
            self._outbound_connected,
            outage=self.broker_outage,
        )
        self.inbound = InboundLink(
            settings.mqtt,
            resolve,
            self.topics.input_filters(),
            self.queue,
            self._inbound_changed,
            after=self.outbound.connected,
            sessions=BrokerSessions(
                self.redis, self.keys, settings.mqtt.client_id, self.redis_outage
            ),
            outage=self.broker_outage,
        )
        self.publisher = StatePublisher(
            self.topics, self.store, self.outbound.publish, clock, self.redis_outage
        )
        self.commands = CommandHandler(self.store, self.publisher)
        self.ingest = Ingest(
            settings=settings.alerts,
            limits=Limits(max_payload_bytes=settings.mqtt.max_payload_bytes),
            topics=self.topics,
            store=self.store,
            publisher=self.publisher,
            commands=self.commands,
            client_id=settings.mqtt.client_id,
            other_topics=self._dispatch_extra,
        )
        self.extra_tasks: list[Callable[[], Awaitable[None]]] = []
        self._subscriptions: list[tuple[str, Callable[[Inbound], Awaitable[None]]]] = []
        self.ready = asyncio.Event()
        self._beat_now = asyncio.Event()  # a connection changed: tell `health` at once
        self.redis_ok = False
        self._background: set[asyncio.Task[None]] = set()
        self.holding = 0  # messages the pipeline holds (not acknowledged) while Redis is away
        # Set on any Redis failure: a script may have committed and lost its reply, so
        # its state change never reached MQTT. The heartbeat resyncs once Redis is back.
        self._redis_lost = False
        self.escalation: Any = None  # the EscalationEngine, once escalation/setup.py added it
        self.noise: Any = None  # the SilenceRuntime, once noise/setup.py added it

    # -- seams for optional parts (Home Assistant, escalation, metrics): call before run()
    def add_subscription(
        self,
        topic_filter: str,
        handler: Callable[[Inbound], Awaitable[None]],
        *,
        shared: bool = True,
    ) -> None:
        """Also subscribe to `topic_filter` (QoS 1, on the persistent session); matching
        messages go to `handler` in arrival order, then are acknowledged. `shared=False`:
        every replica gets every message, retained ones too, also with a shared group."""
        self._subscriptions.append((topic_filter, handler))
        self.inbound.add_filter(topic_filter, shared=shared)

    def add_task(self, factory: Callable[[], Awaitable[None]]) -> None:
        """Run `factory()` beside the pipeline, restarted with backoff if it fails."""
        self.extra_tasks.append(factory)

    def add_listener(self, listener: StateListener) -> None:
        self.publisher.listeners.append(listener)

    @property
    def mqtt_connected(self) -> bool:
        return self.inbound.connected.is_set() and self.outbound.connected.is_set()

    async def _dispatch_extra(self, message: Inbound) -> bool:
        for topic_filter, handler in self._subscriptions:
            if topic_matches_sub(topic_filter, message.topic):
                await handler(message)
                return True
        return False

    async def run(self) -> None:
        _LOGGER.info(
            "homealert-mqtt %s starting: broker %s, Redis %s, base topic %r",
            __version__,
            "auto (zeroconf)" if self.settings.mqtt.discover else self.settings.mqtt.safe_url(),
            self.settings.redis.safe_url(),
            self.settings.mqtt.base_topic,
        )
        await wait_for_redis(self.redis, self.settings.redis)
        self.redis_ok = True
        try:
            async with asyncio.TaskGroup() as tasks:
                children = [
                    tasks.create_task(self.outbound.run(), name="mqtt-out"),
                    tasks.create_task(self.inbound.run(), name="mqtt-in"),
                    tasks.create_task(self._supervise("pipeline", self._process), name="pipeline"),
                    tasks.create_task(self._supervise("retention", self._sweep), name="retention"),
                    tasks.create_task(
                        self._supervise("summary", self.publisher.run_summary), name="summary"
                    ),
                    tasks.create_task(
                        self._supervise("heartbeat", self._heartbeat), name="heartbeat"
                    ),
                ]
                for factory in self.extra_tasks:
                    children.append(
                        tasks.create_task(self._supervise(factory.__qualname__, factory))
                    )
                await self._until_cancelled(children)
        finally:
            with suppress(Exception):
                # Stopped: `health` must not report this replica healthy until the TTL.
                replica = self.keys.replica(self.settings.mqtt.client_id)
                async with asyncio.timeout(2):
                    await self.redis.delete(replica)
            with suppress(Exception):
                await self.redis.aclose()

    async def _until_cancelled(self, children: list[asyncio.Task[None]]) -> None:
        """Wait until the service is stopped; then say `offline` (while still connected)
        and stop the children.

        Each child is cancelled until it is done, not once: Python 3.11's
        asyncio.wait_for, which redis-py and aiomqtt use, returns normally when a
        cancellation lands just as its inner call completes, and a child that swallowed
        the TaskGroup's one cancel would keep the service from ever stopping.
        """
        try:
            await asyncio.Event().wait()
        finally:
            with suppress(Exception):
                await asyncio.wait_for(self.outbound.close(), 5)
            while pending := [child for child in children if not child.done()]:
                for child in pending:
                    child.cancel()
                await asyncio.wait(pending, timeout=0.2)

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run a part until the service stops; a part that fails is started again.

        A Redis or broker outage is not a failure of the part: it is reported to the
        outage log (no traceback) and the part starts again within a second or two.
        """
        transient = Backoff(initial=0.1, cap=2)
        failing = Backoff(initial=1, cap=30)
        while True:
            try:
                await factory()
                return
            except Exception as err:
                if is_transient(err):
                    self.redis_outage.failed(err, name)
                    delay = transient.next_delay()
                else:
                    delay = failing.next_delay()
                    _LOGGER.exception("%s failed; restarting in %.1f s", name, delay)
            await asyncio.sleep(delay)

    def _redis_changed(self, up: bool) -> None:
        if not up:
            # A script may have committed and lost its reply, so its state change never
            # reached MQTT: the heartbeat resyncs once Redis is back.
            self.redis_ok = False
            self._redis_lost = True
            # The connections idle in the pool died with Redis; one used before its
            # health check is due would fail a call after Redis is back. Closed now, each
            # is reconnected on its next use.
            task = asyncio.get_running_loop().create_task(
                self.redis.connection_pool.disconnect(inuse_connections=False)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self._beat_now.set()

    # -- connection events
    async def _outbound_connected(self) -> None:
        try:
            await self.publisher.resync()
        except (RedisError, OSError) as err:
            self.redis_outage.failed(err, "resync")  # the heartbeat resyncs once it is back
        await self._publish_status()

    async def _inbound_changed(self, _subscribed: bool) -> None:
        await self._publish_status()

    async def _publish_status(self) -> None:
        online = self.inbound.connected.is_set() and self.outbound.connected.is_set()
        self._beat_now.set()
        await self.outbound.publish(
            self.topics.status, b"online" if online else b"offline", 1, True
        )
        if online and not self.ready.is_set():
            # Up: what exists now (modules, clients, settings) lives as long as the
            # process. Keep it out of the collector's full passes, which otherwise stall
            # the event loop for 25-60 ms every few seconds under load.
            gc.collect()
            gc.freeze()
        if online:
            self.ready.set()

    # -- the pipeline
    async def _process(self) -> None:
        backoff = Backoff(initial=RETRY_INITIAL, cap=RETRY_CAP)
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH_MAX and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            acked: set[int] = set()
            ack = self._acker(acked)
            while batch:
                try:
                    await self.ingest.handle(batch, ack)
                    backoff.reset()
                    self.holding = 0
                    self.redis_outage.ok()
                    break
                except (RedisError, OSError) as err:
                    # Not acknowledged, so not lost: retry the rest, marked as redelivered
                    # so that a commit whose reply was lost is not counted twice.
                    self._redis_lost = True
                    batch = [_as_retry(m) for m in batch if id(m) not in acked]
                    # Ids of freed messages can be reused by the next copies: start over.
                    acked.clear()
                    self.holding = len(batch)
                    self.redis_outage.failed(err, f"pipeline, holding {len(batch)} messages")
                    await asyncio.sleep(backoff.next_delay())

    def _acker(self, acked: set[int]) -> Callable[[Inbound], None]:
        def ack(message: Inbound) -> None:
            acked.add(id(message))
            self.inbound.ack(message)

        return ack

    async def _sweep(self) -> None:
        while True:
            result = await self.store.expire_due()
            if result.expired or result.removed_groups:
                for alert_id in result.expired:
                    await self.publisher.event("expired", None, id=alert_id)
                await self.publisher.removed(result.expired, result.removed_groups)
            for group in result.changed_groups:
                await self.publisher.group(group)
            if not result.expired:
                await asyncio.sleep(SWEEP_INTERVAL)

    async def _heartbeat(self) -> None:
        """A replica's health in Redis, read by `homealert-mqtt health` (the Docker check)."""
        key = self.keys.replica(self.settings.mqtt.client_id)
        while True:
            self._beat_now.clear()
            connected = self.mqtt_connected
            await self.redis.hset(
                key,
                mapping={
                    "mqtt": int(connected),
                    "at": self.clock(),
                    "pid": os.getpid(),
                    "version": __version__,
                },
            )
            await self.redis.expire(key, HEARTBEAT_TTL)
            self.redis_outage.ok()
            self.redis_ok = True
            if self._redis_lost and self.outbound.connected.is_set():
                self._redis_lost = False
                _LOGGER.info("republishing retained state from Redis after the outage")
                await self.publisher.resync()
            with suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_INTERVAL):
                    await self._beat_now.wait()


def _as_retry(message: Inbound) -> Inbound:
    return dataclasses.replace(message, dup=True)
