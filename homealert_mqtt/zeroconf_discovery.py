"""Zeroconf (mDNS / DNS-SD): find the MQTT broker, announce the service.

- `find_mqtt_broker()` browses `_mqtt._tcp.local.`, the type Mosquitto's Home
  Assistant add-on and most home brokers advertise, so a default install needs no
  broker address in its config.
- `ZeroconfResolver` is the service's broker resolver for `mqtt.url: auto`: it looks
  until a broker answers, with backoff, and never gives up.
- `ServiceAnnouncer` registers `_homealert._tcp.local.` with TXT `version` and
  `base_topic`, so tools on the network can find the service and its topics. The
  TXT record is public on the LAN: it never carries credentials.
  `announce_while_running()` keeps it registered for the life of a task.

Registration uses `cooperating_responders=True`: zeroconf then skips the RFC 6762
probing (three probes 250 ms apart plus the wait, about 1.2 s at every start). That
is safe because the instance name contains the host name (unique per replica);
two instances with the same name would both answer rather than one being renamed.

mDNS responders must not multicast the same record twice within one second (RFC
6762 section 6): a browser started right after a service registered may get its
answer only on the browser's second query, about one second later. Timeouts below
a second therefore risk missing a broker that has only just appeared.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from homealert_mqtt.mqtt import link
from homealert_mqtt.mqtt.backoff import Backoff

_LOGGER = logging.getLogger(__name__)

MQTT_SERVICE_TYPE: Final = "_mqtt._tcp.local."
HOMEALERT_SERVICE_TYPE: Final = "_homealert._tcp.local."
# One resolve must not eat the whole browse window when a record is slow to come.
_MAX_RESOLVE_SECONDS: Final = 1.0
_LABEL_CHARS = re.compile(r"[^A-Za-z0-9-]+")

# Where to speak mDNS: every interface, or a list of interface addresses (the tests
# use ["127.0.0.1"] so that nothing leaves the machine). A subset of zeroconf's own
# Interfaces, which the package does not export.
Interfaces = InterfaceChoice | list[str]


@dataclass(frozen=True)
class BrokerAddress:
    name: str  # DNS-SD instance name, e.g. "Mosquitto broker"
    host: str  # IPv4 address when advertised, else IPv6, else the host name
    port: int


def instance_name(full_name: str, service_type: str) -> str:
    """`Mosquitto broker._mqtt._tcp.local.` -> `Mosquitto broker`."""
    suffix = "." + service_type
    return full_name[: -len(suffix)] if full_name.endswith(suffix) else full_name


def _host_of(info: AsyncServiceInfo) -> str | None:
    for version in (IPVersion.V4Only, IPVersion.V6Only):
        if addresses := info.parsed_scoped_addresses(version):
            return addresses[0]
    return info.server.rstrip(".") if info.server else None


async def find_mqtt_broker(
    preferred_name: str | None = None,
    # The browse window is the function's own semantics (best answer so far when it
    # ends), which an asyncio.timeout() around the call could not give.
    timeout: float = 3.0,  # noqa: ASYNC109
    *,
    interfaces: Interfaces = InterfaceChoice.All,
    service_type: str = MQTT_SERVICE_TYPE,
) -> BrokerAddress | None:
    """Browse for MQTT brokers for at most `timeout` seconds.

    Returns as soon as the broker named `preferred_name` (case-insensitive, as DNS
    names are) resolves, or, without a preference, the first broker that resolves.
    With a preference that never shows up, the first broker found is returned when
    the time is up; None when there was none.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    names: asyncio.Queue[str] = asyncio.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        # Called in the event loop thread by AsyncServiceBrowser.
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            names.put_nowait(name)

    wanted = preferred_name.casefold() if preferred_name else None
    first: BrokerAddress | None = None
    seen: set[str] = set()
    try:
        azc = AsyncZeroconf(interfaces=interfaces)
    except OSError as err:
        # No multicast here (a container without a LAN, say): the caller falls back
        # to the configured broker, as when nothing answers.
        _LOGGER.warning("mDNS unavailable, cannot look for an MQTT broker: %s", err)
        return None
    browser = AsyncServiceBrowser(azc.zeroconf, service_type, handlers=[on_change])
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                name = await names.get()
                if name in seen:
                    continue
                broker = await _resolve(azc, service_type, name, deadline - loop.time())
                if broker is None:
                    continue  # a later Updated may resolve it
                seen.add(name)
                _LOGGER.info(
                    "found MQTT broker '%s' at %s:%d", broker.name, broker.host, broker.port
                )
                if wanted is None or broker.name.casefold() == wanted:
                    return broker
                first = first or broker
    except TimeoutError:
        pass
    finally:
        await browser.async_cancel()
        await azc.async_close()
    if first is not None and preferred_name:
        _LOGGER.warning(
            "MQTT broker '%s' not found within %.1f s, using '%s'",
            preferred_name,
            timeout,
            first.name,
        )
    return first


async def _resolve(
    azc: AsyncZeroconf, service_type: str, name: str, remaining: float
) -> BrokerAddress | None:
    info = AsyncServiceInfo(service_type, name)
    wait_ms = max(1.0, min(remaining, _MAX_RESOLVE_SECONDS) * 1000)
    if not await info.async_request(azc.zeroconf, wait_ms) or info.port is None:
        return None
    host = _host_of(info)
    if host is None:
        return None
    return BrokerAddress(instance_name(name, service_type), host, info.port)


def _local_addresses(interfaces: Interfaces) -> list[str]:
    """Addresses to advertise: the chosen interfaces', else every non-loopback IPv4."""
    if isinstance(interfaces, list):
        return list(interfaces)
    found = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if ip.is_IPv4 and not str(ip.ip).startswith("127.")
    ]
    return found or ["127.0.0.1"]


class ServiceAnnouncer:
    """Registers this service as `<instance>._homealert._tcp.local.`.

    `port` goes into the SRV record: the HTTP health port when that server runs,
    else 0 (the service itself is reached through MQTT, at `base_topic`).
    """

    def __init__(
        self,
        *,
        version: str,
        base_topic: str,
        port: int = 0,
        name: str | None = None,
        addresses: Sequence[str] | None = None,
        interfaces: Interfaces = InterfaceChoice.All,
    ) -> None:
        hostname = socket.gethostname()
        self.instance = name or f"HomeAlert {hostname}"
        label = _LABEL_CHARS.sub("-", self.instance).strip("-").lower() or "homealert"
        self.info = AsyncServiceInfo(
            HOMEALERT_SERVICE_TYPE,
            f"{self.instance}.{HOMEALERT_SERVICE_TYPE}",
            port=port,
            properties={"version": version, "base_topic": base_topic},
            # Not the machine's own `<hostname>.local.`: the OS responder (avahi)
            # already answers for that name.
            server=f"{label}.local.",
            parsed_addresses=list(addresses or _local_addresses(interfaces)),
        )
        self._interfaces = interfaces
        self._azc: AsyncZeroconf | None = None

    async def start(self) -> None:
        if self._azc is not None:
            return
        azc = AsyncZeroconf(interfaces=self._interfaces)
        try:
            await azc.async_register_service(self.info, cooperating_responders=True)
        except BaseException:
            await azc.async_close()
            raise
        self._azc = azc
        _LOGGER.info("announced '%s' on mDNS", self.info.name)

    async def stop(self) -> None:
        """Unregister (sends goodbye packets so browsers drop us at once) and close."""
        if self._azc is None:
            return
        azc, self._azc = self._azc, None
        try:
            await azc.async_unregister_service(self.info)
        finally:
            await azc.async_close()


class ZeroconfResolver:
    """The MQTT links' `Resolver` for `mqtt.url: auto`.

    Browses until a broker answers: when none does, it says so in the log and looks
    again after a growing delay (up to `retry_cap` seconds), for as long as it takes.
    Both MQTT links call it at start and on every reconnect; one browse at a time
    serves them all, and a broker found less than `reuse_for` seconds ago is reused,
    so the links' reconnects after a short outage do not each wait for a browse.
    """

    def __init__(
        self,
        preferred_name: str | None = None,
        *,
        browse_timeout: float = 3.0,
        interfaces: Interfaces = InterfaceChoice.All,
        reuse_for: float = 10.0,
        retry_initial: float = 2.0,
        retry_cap: float = 60.0,
    ) -> None:
        self.preferred_name = preferred_name
        self.browse_timeout = browse_timeout
        self.interfaces = interfaces
        self.reuse_for = reuse_for
        self._backoff = Backoff(initial=retry_initial, cap=retry_cap)
        self._lock = asyncio.Lock()
        self._last: link.BrokerAddress | None = None
        self._found_at = 0.0
        self.browses = 0  # how many times it looked (for tests and the log)

    @property
    def last(self) -> link.BrokerAddress | None:
        """The broker found most recently, if any."""
        return self._last

    async def __call__(self) -> link.BrokerAddress:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._last is not None and loop.time() - self._found_at < self.reuse_for:
                return self._last
            while True:
                self.browses += 1
                found = await find_mqtt_broker(
                    self.preferred_name, self.browse_timeout, interfaces=self.interfaces
                )
                if found is not None:
                    break
                delay = self._backoff.next_delay()
                wanted = f" '{self.preferred_name}'" if self.preferred_name else ""
                _LOGGER.warning(
                    "no MQTT broker%s advertises %s on the network (looked for %.0f s); "
                    "looking again in %.0f s (or set mqtt.url to the broker's address)",
                    wanted,
                    MQTT_SERVICE_TYPE,
                    self.browse_timeout,
                    delay,
                )
                await asyncio.sleep(delay)
            self._backoff.reset()
            _LOGGER.info(
                "using MQTT broker '%s' at %s:%d (found by zeroconf)",
                found.name,
                found.host,
                found.port,
            )
            self._last = link.BrokerAddress(found.host, found.port)
            self._found_at = loop.time()
            return self._last


async def announce_while_running(
    announcer: ServiceAnnouncer, *, retry_initial: float = 5.0, retry_cap: float = 300.0
) -> None:
    """Keep `announcer` registered until cancelled; unregister (goodbye) on the way out.

    mDNS trouble (no multicast on this host) is logged and retried with backoff: the
    announcement is a convenience and never stops the service.
    """
    backoff = Backoff(initial=retry_initial, cap=retry_cap)
    while True:
        try:
            await announcer.start()
            break
        except OSError as err:
            delay = backoff.next_delay()
            _LOGGER.warning(
                "cannot announce the service on mDNS (%s); trying again in %.0f s", err, delay
            )
            await asyncio.sleep(delay)
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        await announcer.stop()
