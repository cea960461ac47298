"""Templates: choice by type, sandbox, fallbacks, bounds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homealert_mqtt.notify.base import Message
from homealert_mqtt.notify.templates import (
    SHIPPED_DIR,
    TemplateRenderer,
    TemplatesConfig,
)

PARTS = ("subject", "text", "html", "short", "voice", "slack")
DEFAULT_CUSTOM = {
    "disk_space": "disk_space.j2",
    "service_down": "service_down.j2",
    "high_cpu": "high_cpu.j2",
}


def alert(n: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"nas_thing_{n}",
        "state": "active",
        "priority": "P3",
        "severity": "medium",
        "source": "nas",
        "type": "backup_failed",
        "message": f"Backup number {n} failed",
        "attributes": {"job": "nightly"},
        "count": 1,
        "first_seen": "2024-05-01T10:00:00Z",
        "last_seen": "2024-05-01T10:00:00Z",
        "group_id": "grp_nas",
        "escalation_level": 0,
    } | fields


def renderer(base_dir: Path | None = None, **section: Any) -> TemplateRenderer:
    section = {"base_dir": str(base_dir or "/nonexistent/templates")} | section
    return TemplateRenderer(TemplatesConfig.from_section(section))


def names_everything(message: Message, alerts: list[dict[str, Any]]) -> None:
    """Each long part names every alert's id, source, type and message."""
    for part in ("text", "html", "slack", "voice"):
        rendered = getattr(message, part)
        for a in alerts:
            for key in ("id", "source", "type", "message"):
                assert str(a[key]) in rendered, (part, key)


@pytest.mark.parametrize("kind", ["alert", "digest", "resolved"])
@pytest.mark.parametrize("alert_type", ["backup_failed", *DEFAULT_CUSTOM])
def test_shipped_templates_name_every_alert(kind: str, alert_type: str) -> None:
    alerts = [alert(1, type=alert_type), alert(2, type=alert_type, priority="P1")]

    message = renderer().render(kind, alerts)

    names_everything(message, alerts)
    assert message.priority == "P1"
    assert message.alert_ids == ("nas_thing_1", "nas_thing_2")
    assert all(getattr(message, part) for part in PARTS)
    assert "\n" not in message.subject
    assert len(message.short) <= 160


def test_resolved_says_resolved() -> None:
    message = renderer().render("resolved", [alert()])
    assert "resolved" in message.subject.lower()
    assert "resolved" in message.text.lower()
    assert "resolved" in message.short.lower()


def test_digest_lists_all_alerts() -> None:
    alerts = [alert(n) for n in range(1, 8)]

    message = renderer().render("digest", alerts, group={"id": "grp_nas", "count": 7})

    names_everything(message, alerts)
    assert "7 new alerts" in message.subject
    assert "grp_nas" in message.text


@pytest.mark.parametrize(
    ("alert_type", "words"),
    [
        ("disk_space", "Disk almost full"),
        ("service_down", "is down"),
        ("high_cpu", "High CPU"),
        ("backup_failed", "backup_failed on nas"),
    ],
)
def test_template_chosen_by_type(alert_type: str, words: str) -> None:
    message = renderer().render("alert", [alert(type=alert_type)])
    assert words in message.subject


def test_custom_template_from_base_dir_overrides_some_blocks(tmp_path: Path) -> None:
    (tmp_path / "backup.j2").write_text(
        '{% extends "default.j2" %}'
        "{% block subject %}Backup trouble: {{ alert.attributes.job }}{% endblock %}"
        "{% block text %}Look at {{ alert.source }}.\n{{ super() }}{% endblock %}"
    )
    r = renderer(tmp_path, custom_templates={"backup_failed": "backup.j2"})

    message = r.render("alert", [alert()])

    assert message.subject == "Backup trouble: nightly"
    assert message.text.startswith("Look at nas.")
    names_everything(message, [alert()])  # super() and the inherited blocks


def test_relative_base_dir_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "default.j2").write_text("{% block subject %}Mine{% endblock %}")
    config = TemplatesConfig.from_section({"base_dir": "mine"}, config_dir=tmp_path)
    message = TemplateRenderer(config).render("alert", [alert()])

    assert config.base_dir == tmp_path / "mine"
    assert message.subject == "Mine"
    assert "nas_thing_1" in message.text  # missing blocks: the built-in plain text


def test_missing_base_dir_uses_shipped_templates() -> None:
    config = TemplatesConfig.from_section({"base_dir": "/nonexistent/x"})
    assert not config.base_dir.exists()
    assert (SHIPPED_DIR / "default.j2").is_file()
    assert renderer().render("alert", [alert(type="disk_space")]).subject.startswith("[P3] Disk")


@pytest.mark.parametrize(
    "body",
    [
        "{% block subject %}{% if %}{% endblock %}",  # syntax error
        "{% block subject %}{{ 1 / 0 }}{% endblock %}",  # runtime error
        "{% block subject %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endblock %}",
        "{% block subject %}{{ 'x' * 1000000 }}{% endblock %}",  # sandbox size bound
        "{% block subject %}{{ range(10 ** 9) | list }}{% endblock %}",
    ],
)
def test_broken_custom_template_falls_back_to_default(
    tmp_path: Path, body: str, our_warnings: Callable[[], list[str]]
) -> None:
    (tmp_path / "broken.j2").write_text(body)
    r = renderer(tmp_path, custom_templates={"backup_failed": "broken.j2"})

    message = r.render("alert", [alert()])

    assert message.subject == "[P3] backup_failed on nas"  # the default template's
    names_everything(message, [alert()])
    [warning] = our_warnings()
    assert "broken.j2" in warning


def test_missing_custom_template_falls_back(our_warnings: Callable[[], list[str]]) -> None:
    r = renderer(custom_templates={"backup_failed": "nope.j2"})
    assert r.render("alert", [alert()]).subject == "[P3] backup_failed on nas"
    assert len(our_warnings()) == 1


def test_broken_default_falls_back_to_plain_text(
    tmp_path: Path, our_warnings: Callable[[], list[str]]
) -> None:
    (tmp_path / "default.j2").write_text("{% block text %}{{ nope( }}{% endblock %}")
    (tmp_path / "broken.j2").write_text("{% extends 'default.j2' %}")
    r = renderer(tmp_path, custom_templates={"backup_failed": "broken.j2"})

    message = r.render("digest", [alert(1), alert(2)])

    names_everything(message, [alert(1), alert(2)])
    assert message.subject.startswith("[P3]")
    assert len(our_warnings()) == 2


HOSTILE = "{{ ''.__class__.__mro__ }} {% raw %}x{% endraw %} <script>alert(1)</script> <!channel>"


def test_hostile_fields_render_literally() -> None:
    a = alert(message=HOSTILE, source="nas", attributes={"k": "{{ 7 * 7 }}"})

    message = renderer().render("alert", [a])

    assert "{{ ''.__class__.__mro__ }}" in message.text
    assert "{{ 7 * 7 }}" in message.text
    assert "49" not in message.text
    assert "<script>" in message.text  # plain text is not HTML
    assert "<script>" not in (message.html or "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (message.html or "")
    assert "<!channel>" not in message.slack  # no @channel ping from alert text
    assert "&lt;!channel&gt;" in message.slack


def test_fields_and_outputs_are_bounded() -> None:
    huge = "x" * 200_000
    a = alert(message=huge, source=huge, attributes={f"k{i}": huge for i in range(500)})

    message = renderer().render("alert", [a])

    assert len(message.short) <= 160
    assert message.short.endswith("...")
    assert len(message.subject) <= 200
    assert len(message.text) <= 20_000
    assert "x" * 1025 not in message.text  # message clipped at 1024 before rendering


@pytest.mark.parametrize("count", [1, 3, 40])
def test_sms_never_exceeds_160(count: int) -> None:
    alerts = [
        alert(n, message="Water detected under the washing machine " * 3) for n in range(count)
    ]
    assert len(renderer().render("digest", alerts).short) <= 160


def test_escalation_level_reads_as_reminder() -> None:
    message = renderer().render("alert", [alert()], level=2)
    assert "Reminder 2" in message.subject


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="page"):
        renderer().render("page", [alert()])
