"""Render alerts into a `Message` with sandboxed Jinja2 templates.

A template file defines the blocks `subject`, `text`, `html`, `short`, `voice` and
`slack`; a custom template usually `{% extends "default.j2" %}` and overrides a few.
Each block is rendered on its own, `html` in an autoescaping environment and the rest
in a plain one. A template that fails (syntax, runtime, sandbox) falls back to the
default template, and that to built-in plain text: a notification always comes out.
"""

from __future__ import annotations

import json
import logging
import operator
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import voluptuous as vol
from jinja2 import ChainableUndefined, ChoiceLoader, FileSystemLoader, Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from homealert_mqtt.notify.base import PRIORITIES, Message
from homealert_mqtt.notify.fallback import plain_parts

_LOGGER = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "defaults" / "templates"
BLOCKS = ("subject", "text", "html", "short", "voice", "slack")
_TEXT_BLOCKS = tuple(b for b in BLOCKS if b != "html")

# Input bounds, applied before rendering so no template ever sees a huge value.
MAX_MESSAGE = 1024
MAX_FIELD = 256
MAX_FIELDS = 64
MAX_ATTRIBUTES = 50
MAX_ALERTS = 100
# Output bounds per part.
MAX_OUTPUT = {"subject": 200, "text": 20_000, "html": 100_000, "voice": 1_000, "slack": 3_000}
SMS_LENGTH = 160
# Sandbox bound on `*` and `**` results, so a template cannot build a giant string.
MAX_PRODUCT = 100_000

TEMPLATES_SCHEMA = vol.Schema(
    {
        vol.Optional("base_dir", default="/opt/templates"): str,
        vol.Optional("default_template", default="default.j2"): str,
        vol.Optional(
            "custom_templates",
            default=lambda: {
                "disk_space": "disk_space.j2",
                "service_down": "service_down.j2",
                "high_cpu": "high_cpu.j2",
            },
        ): {str: str},
    }
)

_CONTROL = {c: None for c in range(32) if chr(c) not in "\n\t"} | {0x7F: None}
_SPACES = re.compile(r"\s+")


class NotificationKind(StrEnum):
    ALERT = "alert"  # a new alert (or the first of a group), or an escalation
    DIGEST = "digest"  # alerts that joined a group since the last notice
    RESOLVED = "resolved"


@dataclass(frozen=True)
class TemplatesConfig:
    base_dir: Path
    default_template: str
    custom_templates: Mapping[str, str] = field(default_factory=dict)
    base_topic: str = "homealert"

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any], config_dir: Path | None = None, base_topic: str = ""
    ) -> TemplatesConfig:
        """From `templates.*`; a relative base_dir is relative to the config's folder."""
        section = TEMPLATES_SCHEMA(dict(section))
        base_dir = Path(section["base_dir"]).expanduser()
        if not base_dir.is_absolute() and config_dir is not None:
            base_dir = config_dir / base_dir
        return cls(
            base_dir=base_dir,
            default_template=section["default_template"],
            custom_templates=dict(section["custom_templates"]),
            base_topic=base_topic or "homealert",
        )


class _Sandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that also refuses to multiply or raise its way to huge values."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("exponent too large")
            return operator.pow(left, right)
        if operator_name == "*":
            sizes = [len(x) for x in (left, right) if isinstance(x, str | list | tuple)]
            factors = [x for x in (left, right) if isinstance(x, int)]
            if sizes and factors and sizes[0] * max(factors[0], 0) > MAX_PRODUCT:
                raise SecurityError("product too large")
            return operator.mul(left, right)
        return super().call_binop(context, operator_name, left, right)


def slack_escape(value: Any) -> str:
    """Slack mrkdwn control characters, so alert text cannot ping @channel or link."""
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int, ellipsis: str = "…") -> str:
    return text if len(text) <= limit else text[: max(limit - len(ellipsis), 0)] + ellipsis


def one_line(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def sms_text(text: str) -> str:
    # Three dots, not "…": "…" is outside GSM-7 and would turn the whole SMS into
    # UCS-2, which fits only 70 characters per segment.
    return clip(one_line(text), SMS_LENGTH, "...")


def _scalar(value: Any, limit: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if not isinstance(value, str):
        value = json.dumps(value, default=str, ensure_ascii=False)[: limit + 1]
    return clip(value.translate(_CONTROL), limit)


def _value(value: Any, limit: int) -> Any:
    """A scalar, or a short list of scalars (e.g. a group's alert_ids), bounded."""
    if isinstance(value, list | tuple):
        return [_scalar(item, limit) for item in value[:MAX_ALERTS]]
    return _scalar(value, limit)


def bound_alert(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A bounded, plain copy of an alert state dict (strings, numbers, small dicts)."""
    alert: dict[str, Any] = {}
    for key, value in list(raw.items())[:MAX_FIELDS]:
        name = clip(str(key), 64)
        if name == "attributes" and isinstance(value, Mapping):
            alert[name] = {
                clip(str(k), 64): _scalar(v, MAX_FIELD)
                for k, v in list(value.items())[:MAX_ATTRIBUTES]
            }
        else:
            alert[name] = _value(value, MAX_MESSAGE if name == "message" else MAX_FIELD)
    for name in ("id", "source", "type", "message", "priority"):
        alert.setdefault(name, "")
    alert.setdefault("attributes", {})
    return alert


def highest_priority(alerts: Sequence[Mapping[str, Any]]) -> str:
    found = [str(a.get("priority", "")).upper() for a in alerts]
    return min((p for p in found if p in PRIORITIES), default="P5")


class TemplateRenderer:
    """Renders notifications; safe to share, holds no per-render state."""

    def __init__(self, config: TemplatesConfig) -> None:
        self._config = config
        base_dir = config.base_dir
        if not base_dir.is_dir():
            _LOGGER.info("templates.base_dir %s not found: using the shipped templates", base_dir)
            base_dir = SHIPPED_DIR
        # The shipped folder comes second, so a user folder may hold only the files it
        # changes and still find default.j2 and the other shipped templates.
        loader = ChoiceLoader([FileSystemLoader(base_dir), FileSystemLoader(SHIPPED_DIR)])
        options: dict[str, Any] = {
            "loader": loader,
            "undefined": ChainableUndefined,  # a missing field renders empty
            "trim_blocks": True,
            "lstrip_blocks": True,
        }
        self._text_env = _Sandbox(autoescape=False, **options)
        self._html_env = _Sandbox(autoescape=True, **options)
        for env in (self._text_env, self._html_env):
            env.filters["slack"] = slack_escape

    def render(
        self,
        kind: NotificationKind | str,
        alerts: Sequence[Mapping[str, Any]],
        *,
        group: Mapping[str, Any] | None = None,
        level: int = 0,
    ) -> Message:
        """One message for `alerts` (state dicts as published on <base>/alert/<id>)."""
        kind = NotificationKind(kind)
        if not alerts:
            raise ValueError("render() needs at least one alert")
        shown = [bound_alert(a) for a in alerts[:MAX_ALERTS]]
        priority = highest_priority(alerts)
        context: dict[str, Any] = {
            "kind": kind.value,
            "alerts": shown,
            "alert": shown[0],
            "group": bound_alert(group) if group is not None else None,
            "level": level,
            "priority": priority,
            "count": len(alerts),
            "more": len(alerts) - len(shown),
            "base_topic": self._config.base_topic,
        }
        parts = self._render_parts(self._template_names(shown[0]), context)
        ids = tuple(str(a.get("id", "")) for a in alerts)
        return _message(parts, priority, ids)

    def _template_names(self, alert: Mapping[str, Any]) -> list[str]:
        names = [self._config.default_template]
        custom = self._config.custom_templates.get(str(alert.get("type", "")))
        if custom and custom != self._config.default_template:
            names.insert(0, custom)
        return names

    def _render_parts(self, names: Sequence[str], context: dict[str, Any]) -> dict[str, str]:
        parts: dict[str, str] = {}
        for name in names:
            try:
                rendered = self._render_template(name, context)
            # A notification must always go out: whatever a template does wrong
            # (syntax, sandbox, a filter raising), the next candidate takes over.
            except Exception as err:  # noqa: BLE001 (the boundary described above)
                _LOGGER.warning(
                    "template %s failed, falling back: %s: %s",
                    name,
                    type(err).__name__,
                    clip(str(err), 300),
                )
                continue
            for block, text in rendered.items():
                parts.setdefault(block, text)
            if all(block in parts for block in BLOCKS):
                return parts
        for block, text in plain_parts(context).items():
            parts.setdefault(block, text)
        return parts

    def _render_template(self, name: str, context: dict[str, Any]) -> dict[str, str]:
        """The non-blank blocks of one template (and of the templates it extends)."""
        out: dict[str, str] = {}
        for env, blocks in ((self._text_env, _TEXT_BLOCKS), (self._html_env, ("html",))):
            chain = _chain(env, name)
            ctx = chain[0].new_context(dict(context))
            # What Jinja's `extends` does at render time: stack each ancestor's blocks
            # so a block missing below is found above and super() works.
            for ancestor in chain[1:]:
                for block_name, func in ancestor.blocks.items():
                    ctx.blocks.setdefault(block_name, []).append(func)
            for block in blocks:
                if funcs := ctx.blocks.get(block):
                    text = "".join(_bounded(funcs[0](ctx), MAX_OUTPUT.get(block, 2_000)))
                    if text.strip():
                        out[block] = text.strip()
        return out


# Compiled template -> the name it statically extends. Keyed by the Template object that
# the environment's cache hands out, so a template file changed on disk (auto_reload
# gives a new object) is parsed again; the weak keys let evicted templates go.
_PARENTS: weakref.WeakKeyDictionary[Template, str | None] = weakref.WeakKeyDictionary()


def _parent_of(env: _Sandbox, name: str, template: Template) -> str | None:
    """The static `{% extends "..." %}` of `template`, parsed once per loaded template."""
    try:
        return _PARENTS[template]
    except KeyError:
        pass
    if env.loader is None:  # always set by TemplateRenderer
        raise RuntimeError("template environment without a loader")
    source, filename, _ = env.loader.get_source(env, name)
    extends = env.parse(source, name, filename).find(nodes.Extends)
    parent = extends.template if extends is not None else None
    found = parent.value if isinstance(parent, nodes.Const) else None
    _PARENTS[template] = found
    return found


def _chain(env: _Sandbox, name: str) -> list[Template]:
    """The template and its ancestors by static `{% extends "..." %}`, nearest first."""
    chain: list[Template] = []
    seen: set[str] = set()
    current: str | None = name
    while current is not None and current not in seen and len(chain) < 8:
        seen.add(current)
        template = env.get_template(current)
        chain.append(template)
        current = _parent_of(env, current, template)
    return chain


def _bounded(chunks: Iterator[str], limit: int) -> Iterator[str]:
    """Stop pulling from a block's generator once it has produced `limit` chars."""
    total = 0
    for chunk in chunks:
        yield chunk
        total += len(chunk)
        if total > limit:
            return


def _message(parts: Mapping[str, str], priority: str, ids: tuple[str, ...]) -> Message:
    def part(name: str, shape: Callable[[str], str] = str) -> str:
        return clip(shape(parts[name]), MAX_OUTPUT[name])

    return Message(
        subject=part("subject", one_line),
        text=part("text"),
        html=part("html") or None,
        short=sms_text(parts["short"]),
        voice=part("voice", one_line),
        slack=part("slack"),
        priority=priority,
        alert_ids=ids,
    )
