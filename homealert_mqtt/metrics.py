"""Prometheus metrics of the alert pipeline.

Every metric lives in a registry owned by one `Metrics` object rather than in
prometheus-client's global registry: two services (or two tests) in one process then
never share counters, and nothing registers twice.

Exposed names carry the `homealert_` namespace (Prometheus naming practice), e.g.
`homealert_alerts_received_total`, `homealert_open_alerts{priority="P1"}`,
`homealert_pipeline_latency_seconds_bucket`.

Label values must come from small fixed sets (reject reasons, channel names,
priorities): each new value is a new time series kept for the life of the process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

NAMESPACE = "homealert"
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
DEFAULT_CHANNELS = ("email", "slack", "sms", "phone")

# From half a millisecond (an in-memory dedup hit) to one second (a slow Redis round
# trip under load); anything slower lands in +Inf and is a problem on its own.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


class Metrics:
    """Counters, gauges and the latency histogram the pipeline updates.

    The methods are plain attribute look-ups plus one lock-protected add inside
    prometheus-client, cheap enough to call per message on the hot path.
    """

    def __init__(self, channels: Iterable[str] = DEFAULT_CHANNELS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._received = Counter(
            "alerts_received",
            "Alert messages taken from MQTT (before validation).",
            namespace=NAMESPACE,
            registry=reg,
        )
        self._rejected = Counter(
            "alerts_rejected",
            "Alert messages rejected, by reason.",
            ["reason"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self._deduplicated = Counter(
            "alerts_deduplicated",
            "Alert messages folded into an open alert.",
            namespace=NAMESPACE,
            registry=reg,
        )
        self._sent = Counter(
            "notifications_sent",
            "Notifications delivered, by channel.",
            ["channel"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self._failed = Counter(
            "notifications_failed",
            "Notifications that failed for good (after retries), by channel.",
            ["channel"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self._open = Gauge(
            "open_alerts",
            "Open alerts (active or acknowledged), by priority.",
            ["priority"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self._latency = Histogram(
            "pipeline_latency_seconds",
            "Time to validate an alert message, store it in Redis and publish its state.",
            namespace=NAMESPACE,
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        # Known label values start at 0 so that rate() and alerts on absent series
        # work from the first scrape, not only after the first failure.
        for channel in channels:
            self._sent.labels(channel=channel)
            self._failed.labels(channel=channel)
        for priority in PRIORITIES:
            self._open.labels(priority=priority).set(0)

    def alert_received(self, count: int = 1) -> None:
        self._received.inc(count)

    def alert_rejected(self, reason: str) -> None:
        self._rejected.labels(reason=reason).inc()

    def alert_deduplicated(self) -> None:
        self._deduplicated.inc()

    def notification_sent(self, channel: str) -> None:
        self._sent.labels(channel=channel).inc()

    def notification_failed(self, channel: str) -> None:
        self._failed.labels(channel=channel).inc()

    def set_open_alerts(self, by_priority: Mapping[str, int]) -> None:
        """Set the gauge from a summary's `by_priority`; a priority left out is 0."""
        for priority in PRIORITIES:
            self._open.labels(priority=priority).set(by_priority.get(priority, 0))
        # Anything outside P1..P5 would be a bug upstream; still show it rather than
        # hide open alerts from the dashboard.
        for priority, count in by_priority.items():
            if priority not in PRIORITIES:
                self._open.labels(priority=priority).set(count)

    def observe_latency(self, seconds: float, count: int = 1) -> None:
        """`count` messages that each took `seconds` (a chunk stored and published together)."""
        for _ in range(count):
            self._latency.observe(seconds)

    @contextmanager
    def time_pipeline(self) -> Iterator[None]:
        """Observe the duration of the `with` body in the latency histogram."""
        start = perf_counter()
        try:
            yield
        finally:
            self._latency.observe(perf_counter() - start)

    def exposition(self, accept_header: str = "") -> tuple[bytes, str]:
        """Render the registry as (body, content type), negotiated from `Accept`.

        Prometheus asks for OpenMetrics or text format 1.0.0 in `Accept`; anything
        else gets the classic text format 0.0.4, which every scraper reads.
        """
        encoder, content_type = choose_encoder(accept_header)
        return encoder(self.registry), content_type
