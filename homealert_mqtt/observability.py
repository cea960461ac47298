"""Metrics fed from the running service, and the HTTP server for /healthz and /metrics.

Wired by `install()` when `http.enabled` is true; otherwise nothing here runs and the
escalation engine gets `NO_METRICS`, whose methods do nothing. Every call on the
pipeline's path is O(1): a counter add or a set look-up.

Where each number comes from:

- received, latency: `Ingest.batch_observers` (alerts stored and published, per batch)
  plus the rejected alert messages (`StateListener.rejected`);
- rejected by reason class: `StateListener.rejected`, the reason sorted into a fixed
  set of classes (labels must not grow with the input);
- deduplicated: the `deduplicated` event in `StateListener.alert_changed`;
- open alerts by priority: read from Redis when /metrics is scraped (no cost when
  nobody scrapes; always current when someone does);
- notifications sent / failed by channel: the escalation engine calls
  `notification_sent(channel)` / `notification_failed(channel)`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

from redis.exceptions import RedisError

from homealert_mqtt import __version__
from homealert_mqtt.http_health import HealthReport, HealthServer
from homealert_mqtt.metrics import Metrics
from homealert_mqtt.mqtt.backoff import Backoff
from homealert_mqtt.pipeline.publish import StateListener

if TYPE_CHECKING:
    from homealert_mqtt.models import AlertRecord
    from homealert_mqtt.service import Service
    from homealert_mqtt.store.alert_store import AlertStore

_LOGGER = logging.getLogger(__name__)

SUMMARY_READ_TIMEOUT: Final = 2.0  # a scrape must answer even when Redis does not

# Reject reasons (the text of `<base>/error`) -> a label value from a fixed set. The
# first pattern that matches wins; anything else is `invalid` (a field rule of
# docs/mqtt-api.md, "Alerts in").
REASON_CLASSES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"^payload is \d+ bytes, over the limit"), "too_large"),
    (re.compile(r"^payload (is not|must be|is nested)"), "malformed"),
    (re.compile(r"^retained alerts are not accepted"), "retained"),
    (re.compile(r"^status resolved, but no open alert"), "no_open_alert"),
    (re.compile(r"^(command payload|no alert |no group |alert .* is already )"), "command"),
    (re.compile(r"^(by|note) must be a string"), "command"),
)
# Classes that are alert messages (counted as received); the others are commands or
# alerts already counted when they were stored.
_ALERT_INPUT_CLASSES: Final = frozenset({"too_large", "malformed", "retained", "invalid"})


def reason_class(reason: str) -> str:
    for pattern, name in REASON_CLASSES:
        if pattern.match(reason):
            return name
    return "invalid"


class NotificationCounter(Protocol):
    """What the escalation engine reports to, metrics on or off."""

    def notification_sent(self, channel: str) -> None: ...

    def notification_failed(self, channel: str) -> None: ...


class _NoMetrics:
    def notification_sent(self, channel: str) -> None:
        pass

    def notification_failed(self, channel: str) -> None:
        pass


NO_METRICS: Final[NotificationCounter] = _NoMetrics()


class MetricsListener(StateListener):
    """Feeds `Metrics` from the service's seams; also the engine's NotificationCounter."""

    def __init__(self, metrics: Metrics, store: AlertStore) -> None:
        self.metrics = metrics
        self._store = store

    # -- StateListener
    async def alert_changed(self, alert: AlertRecord, events: Sequence[str]) -> None:
        if "deduplicated" in events:
            self.metrics.alert_deduplicated()

    async def rejected(self, reason: str) -> None:
        name = reason_class(reason)
        self.metrics.alert_rejected(name)
        if name in _ALERT_INPUT_CLASSES:
            self.metrics.alert_received()

    # -- Ingest.batch_observers
    def batch_done(self, count: int, seconds: float) -> None:
        self.metrics.alert_received(count)
        self.metrics.observe_latency(seconds, count)

    # -- the escalation engine
    def notification_sent(self, channel: str) -> None:
        self.metrics.notification_sent(channel)

    def notification_failed(self, channel: str) -> None:
        self.metrics.notification_failed(channel)

    # -- before each scrape
    async def refresh(self) -> None:
        """Open alerts by priority, read from Redis; the last values stay on failure."""
        try:
            async with asyncio.timeout(SUMMARY_READ_TIMEOUT):
                summary = await self._store.summary()
        except (TimeoutError, OSError, RedisError) as err:
            # A scrape still answers, with the last values; /healthz tells about Redis.
            _LOGGER.debug("open alerts not refreshed for /metrics: %s", err)
            return
        self.metrics.set_open_alerts(summary.by_priority)


def health_report(service: Service) -> HealthReport:
    return HealthReport(
        mqtt_connected=service.mqtt_connected,
        redis_connected=service.redis_ok,
        details={"version": __version__},
    )


async def serve_http(server: HealthServer, *, retry_cap: float = 60.0) -> None:
    """Run `server` until cancelled. A port that is taken is retried, never fatal."""
    backoff = Backoff(initial=1.0, cap=retry_cap)
    while True:
        try:
            await server.start()
            break
        except OSError as err:
            delay = backoff.next_delay()
            _LOGGER.warning("HTTP server cannot listen (%s); trying again in %.0f s", err, delay)
            await asyncio.sleep(delay)
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await server.stop()


def install(service: Service) -> NotificationCounter:
    """Metrics and the HTTP server, when `http.enabled`; the engine's counter either way."""
    http = service.settings.http
    if not http.enabled:
        return NO_METRICS
    listener = MetricsListener(Metrics(), service.store)
    service.add_listener(listener)
    service.ingest.batch_observers.append(listener.batch_done)
    server = HealthServer(
        listener.metrics,
        lambda: health_report(service),
        http.host,
        http.port,
        before_metrics=listener.refresh,
    )

    async def http_server() -> None:
        await serve_http(server)

    service.add_task(http_server)
    return listener
