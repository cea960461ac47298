"""A custom template that raises while rendering, and a message that looks like a
template and like HTML: the email still goes out, with the message as plain data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.escalation.sends import wait_sends
from tests.probe import Probe

MESSAGE = "{{ ''.__class__.__mro__ }} <script>alert(1)</script> & done"
# Renders fine up to the text block, which divides by zero at render time.
BROKEN = """{% extends "default.j2" %}
{% block subject %}[{{ priority }}] boiler says {{ alert.message }}{% endblock %}
{% block text %}{{ alert.count // 0 }}{% endblock %}
"""


async def test_a_failing_custom_template_falls_back_and_the_message_stays_data(
    escalation_settings: Callable[..., Any],
    start_service: Callable[..., Any],
    probe: Probe,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "broken.j2").write_text(BROKEN)
    settings, smtp, http = escalation_settings(
        {
            "templates": {"base_dir": str(templates), "custom_templates": {"boiler": "broken.j2"}},
            "alerts": {
                "escalation": {
                    "policies": {"p1": [{"delay": 0, "channels": ["email"], "groups": ["oncall"]}]}
                }
            },
        }
    )
    assert settings.templates.base_dir == templates
    caplog.set_level(logging.WARNING, logger="homealert_mqtt")
    await start_service(settings, clock=clock)
    await probe.alert(source="cellar", type="boiler", severity="critical", message=MESSAGE)
    [row] = await wait_sends(smtp, http, 1)
    assert row.channel == "email"
    [mail] = smtp.messages
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    # The default template took over, with the message as it was sent: not evaluated.
    assert "boiler on cellar" in mail["Subject"]
    assert MESSAGE in text
    assert "__mro__" in html
    assert "<class" not in text + html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; done" in html
    fallbacks = [r.getMessage() for r in caplog.records if "broken.j2 failed" in r.getMessage()]
    assert fallbacks
    assert "ZeroDivisionError" in fallbacks[0]
