"""Optional HTTP endpoint for liveness checks and Prometheus scrapes.

Off by default (`http.enabled: false`): the service is MQTT-native and a home setup
rarely runs Prometheus. When on, it listens on `http.host`:`http.port` (default
127.0.0.1:9466, so nothing is exposed beyond the host unless asked) and serves:

- `GET /healthz`: 200 `{"status": "ok", "mqtt": "connected", "redis": "connected"}`
  while both connections are up, else 503 `{"status": "unavailable", "problems": [...]}`.
  Docker's HEALTHCHECK and Kubernetes probes read the status code alone.
- `GET /metrics`: the `Metrics` registry in Prometheus text (or OpenMetrics) format.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .metrics import Metrics

_LOGGER = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9466


@dataclass(frozen=True)
class HttpConfig:
    enabled: bool = False
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    @classmethod
    def from_config(cls, http: Mapping[str, Any] | None) -> HttpConfig:
        """Build from the (already validated) `http` section; missing keys default."""
        http = http or {}
        return cls(
            enabled=bool(http.get("enabled", False)),
            host=str(http.get("host", DEFAULT_HOST)),
            port=int(http.get("port", DEFAULT_PORT)),
        )


@dataclass(frozen=True)
class HealthReport:
    """What the service knows about its connections at the time of the request."""

    mqtt_connected: bool
    redis_connected: bool
    # Extra facts shown in the body (uptime, version...); must be JSON-serialisable.
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.mqtt_connected and self.redis_connected

    def problems(self) -> list[str]:
        found = []
        if not self.mqtt_connected:
            found.append("mqtt: not connected")
        if not self.redis_connected:
            found.append("redis: not connected")
        return found


# A plain function is enough when the service keeps connection flags; a coroutine
# function is accepted for a check that has to ask something (a Redis PING).
HealthCheck = Callable[[], HealthReport | Awaitable[HealthReport]]


class HealthServer:
    """aiohttp server for /healthz and /metrics; `start()`, then `stop()` on shutdown."""

    def __init__(
        self,
        metrics: Metrics,
        health: HealthCheck,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        before_metrics: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._host = host
        self._port = port
        # Brings gauges up to date before a scrape (e.g. open alerts read from Redis).
        self._before_metrics = before_metrics
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); the configured one before `start()`."""
        if self._runner is not None:
            for address in self._runner.addresses:
                if isinstance(address, tuple) and len(address) >= 2:
                    return int(address[1])
        return self._port

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._handle_health)
        app.router.add_get("/metrics", self._handle_metrics)
        return app

    async def start(self) -> None:
        # No access log: a scraper every 15 s would drown the service's own lines.
        runner = web.AppRunner(self.make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        _LOGGER.info("HTTP health and metrics on http://%s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _handle_health(self, _request: web.Request) -> web.Response:
        try:
            result = self._health()
            report = await result if inspect.isawaitable(result) else result
        except Exception as err:
            # The probe must answer even when the check itself breaks: that is a
            # failed check, not a server error.
            _LOGGER.exception("health check failed")
            return web.json_response(
                {"status": "unavailable", "problems": [f"health check failed: {err!r}"]},
                status=503,
            )
        body: dict[str, Any] = dict(report.details)
        body["mqtt"] = "connected" if report.mqtt_connected else "disconnected"
        body["redis"] = "connected" if report.redis_connected else "disconnected"
        if report.ok:
            body["status"] = "ok"
            return web.json_response(body, status=200)
        body["status"] = "unavailable"
        body["problems"] = report.problems()
        return web.json_response(body, status=503)

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        if self._before_metrics is not None:
            await self._before_metrics()
        payload, content_type = self._metrics.exposition(request.headers.get("Accept", ""))
        # Set the header raw: aiohttp's content_type argument refuses the parameters
        # (version, charset, escaping) that scrapers rely on.
        return web.Response(body=payload, headers={"Content-Type": content_type})
