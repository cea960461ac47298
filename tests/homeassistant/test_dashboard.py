"""docs/home-assistant-dashboard.yaml: stock cards, entities that exist, shown in the docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from homealert_mqtt.homeassistant.discovery import DiscoverySettings, service_messages

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "home-assistant-dashboard.yaml"
DOCS = ROOT / "docs" / "home-assistant.md"
SCREENSHOT = ROOT / "docs" / "images" / "home-assistant-dashboard.png"
STOCK_CARDS = {"entities", "markdown", "vertical-stack", "horizontal-stack", "conditional"}


def _cards(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "type" in node and ("entities" in node or "content" in node or "cards" in node):
            found.append(node)
        for value in node.values():
            found += _cards(value)
    elif isinstance(node, list):
        for value in node:
            found += _cards(value)
    return found


def test_dashboard_uses_stock_cards_and_existing_entities() -> None:
    dashboard = yaml.safe_load(DASHBOARD.read_text(encoding="utf-8"))
    cards = _cards(dashboard["views"])
    assert {card["type"] for card in cards} <= STOCK_CARDS
    payload = service_messages(DiscoverySettings())[0].payload
    assert payload is not None
    announced = {c["default_entity_id"] for c in payload["components"].values()}
    used = {
        row["entity"] if isinstance(row, dict) else row
        for card in cards
        for row in card.get("entities", [])
    }
    assert used
    assert used <= announced, used - announced


def test_markdown_card_only_shows_the_table() -> None:
    """No template logic on the dashboard: the table comes ready from discovery."""
    dashboard = yaml.safe_load(DASHBOARD.read_text(encoding="utf-8"))
    (markdown,) = [c for c in _cards(dashboard["views"]) if c["type"] == "markdown"]
    assert markdown["content"] == "{{ state_attr('sensor.homealert_open_alerts', 'table') }}"
    assert not re.search(r"\{%", markdown["content"])


def test_docs_show_the_dashboard_and_its_screenshot() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert "(images/home-assistant-dashboard.png)" in text
    assert "home-assistant-dashboard.yaml" in text
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
