"""Typed settings built from the validated config: what the rest of the service reads."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from homealert_mqtt.models import Priority, State
from homealert_mqtt.noise.inhibit import InhibitRule
from homealert_mqtt.noise.matchers import Matcher
from homealert_mqtt.noise.schedules import QuietHours, Schedule, parse_clock, parse_day
from homealert_mqtt.noise.types import TypeBehaviour
from homealert_mqtt.presence.config import PresenceSettings


@dataclass(frozen=True, slots=True)
class TlsSettings:
    enabled: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class MqttSettings:
    url: str
    host: str
    port: int
    base_topic: str
    client_id: str
    username: str | None
    password: str | None = field(repr=False)
    protocol: int  # 5 or 4 (3.1.1)
    keepalive: int
    max_payload_bytes: int
    shared_group: str
    broker_name: str | None
    tls: TlsSettings

    @property
    def discover(self) -> bool:
        """`url: auto`: find the broker by zeroconf."""
        return self.url == "auto"

    def safe_url(self) -> str:
        """The URL without credentials, for logs."""
        scheme = "mqtts" if self.tls.enabled else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = field(repr=False)
    key_prefix: str
    tls: TlsSettings
    # None: sized from alerts.escalation.concurrency (redis_client.pool_size)
    max_connections: int | None = None
    health_check_interval: int = 15  # seconds idle before a pooled connection is PINGed

    def safe_url(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class DedupSettings:
    enabled: bool
    window: int
    attributes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupingSettings:
    enabled: bool
    window: int
    max_group_size: int
    attributes: tuple[str, ...]
    digest_interval: int


@dataclass(frozen=True, slots=True)
class Level:
    delay: int
    channels: tuple[str, ...]
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    levels: tuple[Level, ...]
    repeat: int | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    count: int
    period: int


@dataclass(frozen=True, slots=True)
class EscalationSettings:
    policies: dict[str, Policy]
    rate_limits: dict[str, RateLimit]
    notify_resolved: bool
    lease: int = 90  # seconds claimed work stays with its replica (escalation/delivery.Leases)
    concurrency: int = 32  # deliveries in flight at once; sizes the Redis pool too
    ack_timeout: int = 0  # seconds an acknowledgement lasts (noise/acks.py); 0: for good

    def policy_for(self, priority: Priority) -> Policy:
        return self.policies.get(priority.value.lower()) or self.policies["default"]


@dataclass(frozen=True, slots=True)
class AlertSettings:
    retention: dict[State, int]
    dedup: DedupSettings
    grouping: GroupingSettings
    priorities: dict[str, Priority]
    default_priority: Priority
    history_max_entries: int
    history_max_age: int
    escalation: EscalationSettings
    timezone: str | None = None  # IANA name; None: the system's
    schedules: tuple[Schedule, ...] = ()  # alerts.silences.schedules
    inhibit_rules: tuple[InhibitRule, ...] = ()
    types: dict[str, TypeBehaviour] = field(default_factory=dict)  # alerts.types


@dataclass(frozen=True, slots=True)
class TemplateSettings:
    base_dir: Path | None  # None: use the shipped templates
    default_template: str
    custom_templates: dict[str, str]


@dataclass(frozen=True, slots=True)
class HomeAssistantSettings:
    discovery: bool
    discovery_prefix: str
    configuration_url: str | None = None


@dataclass(frozen=True, slots=True)
class HttpSettings:
    enabled: bool
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ZeroconfSettings:
    """mDNS: finding the broker (`mqtt.url: auto`) and announcing the service."""

    announce: bool = False
    interfaces: tuple[str, ...] | None = None  # addresses to speak mDNS on; None: all
    browse_timeout: int = 3  # seconds per look for a broker


# Rate limits a household wants by default: SMS and calls cost money and sleep.
DEFAULT_RATE_LIMITS = {
    "sms": RateLimit(count=5, period=3600),
    "phone": RateLimit(count=3, period=3600),
    "email": RateLimit(count=30, period=3600),
    "slack": RateLimit(count=60, period=3600),
    "mqtt": RateLimit(count=600, period=3600),
    "apprise": RateLimit(count=60, period=3600),
}


@dataclass(frozen=True, slots=True)
class Settings:
    alerts: AlertSettings
    channels: dict[str, Any]  # validated per channel; each channel types its own section
    recipients: dict[str, dict[str, tuple[str, ...]]]
    templates: TemplateSettings
    mqtt: MqttSettings
    redis: RedisSettings
    homeassistant: HomeAssistantSettings
    http: HttpSettings
    log_level: str
    config_dir: Path | None
    zeroconf: ZeroconfSettings = ZeroconfSettings()
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    quiet_hours: dict[str, QuietHours] = field(default_factory=dict)  # by recipient group

    @classmethod
    def from_validated(cls, cfg: dict[str, Any], config_dir: Path | None) -> Settings:
        alerts = cfg["alerts"]
        priorities = {k.lower(): Priority(v) for k, v in alerts["priorities"].items()}
        default_priority = priorities.pop("default", Priority.P5)
        escalation = alerts["escalation"]
        rate_limits = dict(DEFAULT_RATE_LIMITS)
        for channel, limit in escalation["rate_limits"].items():
            base = rate_limits.get(channel, RateLimit(count=60, period=3600))
            rate_limits[channel] = RateLimit(
                count=limit.get("count", base.count), period=limit.get("period", base.period)
            )
        return cls(
            alerts=AlertSettings(
                retention={State(k): v for k, v in alerts["retention"].items()},
                dedup=DedupSettings(
                    enabled=alerts["deduplication"]["enabled"],
                    window=alerts["deduplication"]["window"],
                    attributes=tuple(alerts["deduplication"]["attributes"]),
                ),
                grouping=GroupingSettings(
                    enabled=alerts["grouping"]["enabled"],
                    window=alerts["grouping"]["window"],
                    max_group_size=alerts["grouping"]["max_group_size"],
                    attributes=tuple(alerts["grouping"]["attributes"]),
                    digest_interval=alerts["grouping"]["digest_interval"],
                ),
                priorities=priorities,
                default_priority=default_priority,
                history_max_entries=alerts["history"]["max_entries"],
                history_max_age=alerts["history"]["max_age"],
                escalation=EscalationSettings(
                    policies={
                        name: Policy(
                            levels=tuple(
                                Level(lv["delay"], tuple(lv["channels"]), tuple(lv["groups"]))
                                for lv in pol["levels"]
                            ),
                            repeat=pol["repeat"],
                        )
                        for name, pol in escalation["policies"].items()
                    },
                    rate_limits=rate_limits,
                    notify_resolved=escalation["notify_resolved"],
                    lease=escalation["lease"],
                    concurrency=escalation["concurrency"],
                    ack_timeout=escalation["ack_timeout"],
                ),
                timezone=alerts["timezone"],
                schedules=tuple(_schedule(s) for s in alerts["silences"]["schedules"]),
                types={
                    name: TypeBehaviour.from_config(raw or {})
                    for name, raw in alerts["types"].items()
                },
                inhibit_rules=tuple(
                    InhibitRule(
                        Matcher.parse(r["source_matchers"]),
                        Matcher.parse(r["target_matchers"]),
                        tuple(r["equal"]),
                    )
                    for r in alerts["inhibit_rules"]
                ),
            ),
            channels=cfg["channels"],
            recipients={
                name: {
                    channel: tuple(addrs)
                    for channel, addrs in (group or {}).items()
                    if channel != "quiet_hours"
                }
                for name, group in (cfg["recipients"]["groups"] or {}).items()
            },
            quiet_hours={
                name: QuietHours(
                    parse_clock(group["quiet_hours"]["start"]),
                    parse_clock(group["quiet_hours"]["end"]),
                    frozenset(group["quiet_hours"]["except"]),
                )
                for name, group in (cfg["recipients"]["groups"] or {}).items()
                if group and "quiet_hours" in group
            },
            templates=_templates(cfg["templates"], config_dir),
            mqtt=_mqtt(cfg["mqtt"]),
            redis=RedisSettings(
                url=cfg["redis"]["url"],
                key_prefix=cfg["redis"]["key_prefix"],
                max_connections=cfg["redis"].get("max_connections"),
                health_check_interval=cfg["redis"].get("health_check_interval", 15),
                tls=_tls(
                    cfg["redis"].get("tls", {}), enabled=cfg["redis"]["url"].startswith("rediss")
                ),
            ),
            homeassistant=HomeAssistantSettings(
                discovery=cfg["homeassistant"]["discovery"],
                discovery_prefix=cfg["homeassistant"]["discovery_prefix"],
                configuration_url=cfg["homeassistant"].get("configuration_url"),
            ),
            http=HttpSettings(**cfg["http"]),
            log_level=cfg["logging"]["level"],
            config_dir=config_dir,
            zeroconf=_zeroconf(cfg["zeroconf"], discover=cfg["mqtt"]["url"] == "auto"),
            presence=PresenceSettings.from_config(cfg["presence"]),
        )


def _schedule(cfg: dict[str, Any]) -> Schedule:
    return Schedule(
        name=cfg["name"],
        matcher=Matcher.parse(cfg["matchers"]),
        days=frozenset(parse_day(d) for d in cfg["days"]),
        start=parse_clock(cfg["start"]),
        end=parse_clock(cfg["end"]),
    )


def _zeroconf(cfg: dict[str, Any], *, discover: bool) -> ZeroconfSettings:
    announce = cfg["announce"]
    interfaces = cfg["interfaces"]
    return ZeroconfSettings(
        # `auto`: announce when the broker is found by mDNS too (an mDNS network)
        announce=discover if announce == "auto" else bool(announce),
        interfaces=tuple(interfaces) if interfaces else None,
        browse_timeout=cfg["browse_timeout"],
    )


def _templates(cfg: dict[str, Any], config_dir: Path | None) -> TemplateSettings:
    base = Path(cfg["base_dir"])
    if not base.is_absolute() and config_dir is not None:
        base = config_dir / base
    return TemplateSettings(
        base_dir=base if base.is_dir() else None,
        default_template=cfg["default_template"],
        custom_templates=dict(cfg["custom_templates"] or {}),
    )


def _tls(cfg: dict[str, Any], enabled: bool) -> TlsSettings:
    return TlsSettings(
        enabled=bool(cfg.get("enabled", False)) or enabled,
        ca_certs=cfg.get("ca_certs"),
        certfile=cfg.get("certfile"),
        keyfile=cfg.get("keyfile"),
        insecure=bool(cfg.get("insecure", False)),
    )


def _mqtt(cfg: dict[str, Any]) -> MqttSettings:
    url = cfg["url"]
    host, port, user, password, secure = "localhost", 1883, None, None, False
    if url != "auto":
        parts = urlsplit(url)
        secure = parts.scheme == "mqtts"
        host = parts.hostname or "localhost"
        port = parts.port or (8883 if secure else 1883)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
    protocol = 5 if str(cfg["protocol"]) == "5" else 4
    return MqttSettings(
        url=url,
        host=host,
        port=port,
        base_topic=cfg["base_topic"],
        client_id=cfg.get("client_id") or f"homealert-{socket.gethostname()}"[:64],
        username=user or cfg.get("username"),
        password=password or cfg.get("password"),
        protocol=protocol,
        keepalive=cfg["keepalive"],
        max_payload_bytes=cfg["max_payload_bytes"],
        shared_group=cfg.get("shared_group") or "",
        broker_name=cfg.get("broker_name"),
        tls=_tls(cfg.get("tls", {}), enabled=secure),
    )
