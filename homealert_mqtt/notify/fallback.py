"""The built-in plain text used when no template renders.

Plain Python string formatting on already bounded values, so it cannot fail the way a
template can; it still names every alert's id, source, type and message.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

_HEADLINES = {
    "alert": "Alert",
    "digest": "New alerts in a group",
    "resolved": "Resolved",
}


def _line(alert: Mapping[str, Any]) -> str:
    return (
        f"[{alert.get('priority', '')}] {alert.get('type', '')} on {alert.get('source', '')}: "
        f"{alert.get('message', '')} (id {alert.get('id', '')})"
    )


def plain_parts(context: Mapping[str, Any]) -> dict[str, str]:
    """Every block (subject, text, html, short, voice, slack) for a render context."""
    alerts: list[Mapping[str, Any]] = list(context.get("alerts") or [])
    first = alerts[0] if alerts else {}
    kind = str(context.get("kind", "alert"))
    headline = _HEADLINES.get(kind, "Alert")
    priority = str(context.get("priority", "P5"))
    count = int(context.get("count", len(alerts)))
    what = f"{first.get('type', '')} on {first.get('source', '')}"
    subject = f"[{priority}] {headline}: {what}" + (f" (+{count - 1} more)" if count > 1 else "")
    lines = [_line(a) for a in alerts]
    if more := int(context.get("more", 0)):
        lines.append(f"... and {more} more")
    text = f"{headline} ({priority})\n\n" + "\n".join(lines)
    escaped = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    slack_lines = "\n".join(
        f"• {line}".replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for line in lines
    )
    return {
        "subject": subject,
        "text": text,
        "html": f"<p>{html.escape(headline)} ({priority})</p><ul>{escaped}</ul>",
        "short": f"{headline}: " + "; ".join(lines),
        "voice": f"{headline}, priority {priority[-1:]}. " + ". ".join(lines),
        "slack": f"*{headline} ({priority})*\n{slack_lines}",
    }
