"""The Jinja templates Home Assistant renders for our entities (HA's MQTT template
environment: `value_json` when the payload is JSON, `tojson`, `namespace`).

Kept apart from the config builders: each is a small program of its own, checked
with plain Jinja in the tests and with HA's engine in scripts/check_ha_schemas.py.
"""

from __future__ import annotations

import json
from typing import Final

# Alert states in which the per-alert problem sensor is ON: open and not yet
# acknowledged. The entity exists only while the alert's state is published, so "ON
# while open" would be ON for almost its whole life; "needs someone" is the signal an
# automation wants (flash a light until somebody acks).
NEEDS_ATTENTION_STATES: Final = ("new", "active", "escalated")

# `state` is on HA's list of attribute names it drops, so the alert's state is copied
# to `alert_state`; an empty payload (the alert being removed) gives no attributes.
ALERT_ATTRIBUTES: Final = (
    "{% if value_json is defined %}"
    "{{ dict(value_json, alert_state=value_json.state) | tojson }}"
    "{% else %}{}{% endif %}"
)
# Empty output for an empty payload: HA ignores it instead of logging a bad value.
_ATTENTION_LIST = json.dumps(list(NEEDS_ATTENTION_STATES))
ALERT_STATE: Final = (
    "{% if value_json is defined %}"
    f"{{{{ 'ON' if value_json.state in {_ATTENTION_LIST} else 'OFF' }}}}"
    "{% endif %}"
)

# The summary as the attributes of "Open alerts", plus `table`: its `open_alerts` as a
# Markdown table, so that a Markdown card shows them with no template logic of its own.
SUMMARY_ATTRIBUTES: Final = (
    "{% set t = namespace(rows='') %}"
    "{% for a in value_json.open_alerts | default([]) %}"
    "{% set s = a.age | int(0) %}"
    "{% set age = (s // 86400) ~ ' d' if s >= 86400 else (s // 3600) ~ ' h' if s >= 3600"
    " else (s // 60) ~ ' min' if s >= 60 else 'now' %}"
    "{% set t.rows = t.rows ~ '| ' ~ a.priority ~ ' | ' ~ a.name ~ ' | ' ~ a.state ~ ' | '"
    " ~ (a.message or '') | replace('|', '/') | replace('\\n', ' ') ~ ' | ' ~ age ~ ' |\\n' %}"
    "{% endfor %}"
    "{{ dict(value_json, table=('| | Alert | State | Message | Age |\\n|---|---|---|---|---|\\n'"
    " ~ t.rows) if t.rows else 'No open alerts.') | tojson }}"
)
