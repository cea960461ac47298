"""Silences in Home Assistant: each silence is a button "Expire silence <id>" on the
HomeAlert device, its attributes the silence's state (matchers, until when, who, why).
Pressing it ends the silence; the entity goes when the silence does."""

from __future__ import annotations

from homealert_mqtt.homeassistant.bridge import DiscoveryBridge
from homealert_mqtt.homeassistant.discovery import silence_messages
from homealert_mqtt.noise.runtime import SilenceListener
from homealert_mqtt.noise.silences import Silence


class SilenceEntities(SilenceListener):
    def __init__(self, bridge: DiscoveryBridge) -> None:
        self.bridge = bridge

    async def silence_changed(self, silence: Silence) -> None:
        key = f"silence:{silence.id}"
        await self.bridge.extra_changed(key, silence_messages(self.bridge.settings, silence.id))

    async def silence_removed(self, silence_id: str) -> None:
        await self.bridge.extra_removed(f"silence:{silence_id}")
