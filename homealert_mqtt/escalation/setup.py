"""Puts the escalation engine into a service: channels, templates, delivery, the loop."""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path

from homealert_mqtt.config.settings import Settings
from homealert_mqtt.escalation.delivery import Delivery, Leases
from homealert_mqtt.escalation.engine import EscalationEngine
from homealert_mqtt.escalation.plan import start_plan
from homealert_mqtt.notify.base import ChannelContext
from homealert_mqtt.notify.registry import close_channels, create_channels
from homealert_mqtt.notify.templates import TemplateRenderer, TemplatesConfig
from homealert_mqtt.service import Service
from homealert_mqtt.store.escalation_store import EscalationStore
from homealert_mqtt.store.reply_codes import ReplyCodes


def shipped_templates() -> Path:
    return Path(str(resources.files("homealert_mqtt").joinpath("defaults/templates")))


def renderer_for(settings: Settings) -> TemplateRenderer:
    """The notification templates of `settings` (the shipped ones unless configured)."""
    templates = settings.templates
    return TemplateRenderer(
        TemplatesConfig(
            base_dir=templates.base_dir or shipped_templates(),
            default_template=templates.default_template,
            custom_templates=templates.custom_templates,
            base_topic=settings.mqtt.base_topic,
        )
    )


def add_escalation(service: Service) -> EscalationEngine:
    settings = service.settings
    channels = create_channels(
        settings.channels,
        # Notifications wait for the broker's PUBACK: one that did not reach it is `failed`
        # (and retried), never reported `sent`.
        ChannelContext(
            publish=service.outbound.publish_confirmed,
            base_topic=settings.mqtt.base_topic,
            reply_codes=ReplyCodes(service.store, service.clock),
        ),
    )
    renderer = renderer_for(settings)
    store = EscalationStore(service.store, service.clock)
    delivery = Delivery(
        store=store,
        channels=channels,
        rate_limits=settings.alerts.escalation.rate_limits,
        clock=service.clock,
        leases=Leases.from_seconds(settings.alerts.escalation.lease),
        concurrency=settings.alerts.escalation.concurrency,
        outage=service.redis_outage,
        incarnation=f"{settings.mqtt.client_id}:{secrets.token_hex(4)}",
    )
    engine = EscalationEngine(
        settings=settings.alerts.escalation,
        recipients=settings.recipients,
        digest_interval=settings.alerts.grouping.digest_interval,
        store=store,
        delivery=delivery,
        renderer=renderer,
        publisher=service.publisher,
        clock=service.clock,
        outage=service.redis_outage,
        client_id=settings.mqtt.client_id,
    )

    async def run_escalation() -> None:
        try:
            await engine.run()
        finally:
            await close_channels(channels)

    service.add_task(run_escalation)
    service.ingest.start_plan = start_plan(
        settings.alerts.escalation, settings.recipients, set(channels)
    )
    service.escalation = engine
    return engine
