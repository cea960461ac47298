"""The chaos soak's bookkeeping (`chaos_soak.py`): what was sent, what was stored, which
pages were due, and how what the sinks received compares. No processes, no sockets: it
judges records, so `tests/benchmarks/test_chaos_ledger.py` can check it on made-up runs.

Times are wall-clock seconds (float) except where a name ends in `_ms` (the service's
epoch milliseconds, as stored in Redis). One machine, one clock for every process.

Pages are named by the soak's own template: every block renders
`SOAK:<kind>:<level>:<id>[,<id>...]:END`, and each escalation level pages its own
recipient group, so a page is attributable to (alert, level, channel, recipient).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

TAG = re.compile(r"SOAK:([a-z]+):(\d+):([a-z0-9_,-]*):END")
OPEN_STATES = ("new", "active", "escalated", "acknowledged")
BROKER, REDIS, SERVICE = "broker", "redis", "service"


# ============================================================================ records
@dataclass
class Msg:
    """One MQTT message the publisher sent: when, and when the broker PUBACKed it."""

    sent: float
    puback: float | None = None


@dataclass
class SentAlert:
    """Everything the publisher sent for one alert (one fingerprint: a unique `type`)."""

    type: str
    firing: list[Msg] = field(default_factory=list)  # the new one first, then repeats
    ack: Msg | None = None  # `<base>/alert/<id>/ack`
    resolve: Msg | None = None  # `status: resolved` on `<base>/in`

    def messages(self) -> list[Msg]:
        return [*self.firing, *(m for m in (self.ack, self.resolve) if m is not None)]


@dataclass(frozen=True)
class StoredAlert:
    """An alert as Redis holds it at the end."""

    id: str
    type: str
    state: str
    count: int
    level: int  # escalation_level
    opened_ms: int
    acked_ms: int | None = None
    resolved_ms: int | None = None

    @property
    def stop_ms(self) -> int | None:
        """When escalation stopped (the first of ack and resolve), or None."""
        stops = [t for t in (self.acked_ms, self.resolved_ms) if t is not None]
        return min(stops) if stops else None


@dataclass(frozen=True)
class Kill:
    at: float  # the SIGKILL
    target: str  # service | broker | redis
    back: float  # when its restart was started (and listening, for broker and Redis)
    online: float | None = None  # service kills: when it said `online` again


def with_online(kills: list[Kill], online_times: list[float]) -> list[Kill]:
    """Each service kill with the first `<base>/status` = online seen after it."""
    out = []
    for kill in kills:
        after = [t for t in online_times if t > kill.at] if kill.target == SERVICE else []
        out.append(replace(kill, online=min(after)) if after else kill)
    return out


@dataclass(frozen=True)
class Page:
    """One notification a sink received."""

    at: float
    channel: str  # email | slack | sms | phone | mqtt
    recipient: str
    kind: str  # alert | digest | resolved
    level: int
    alert_ids: tuple[str, ...]


@dataclass(frozen=True)
class Level:
    delay: float  # seconds after the alert opened
    targets: tuple[tuple[str, str], ...]  # (channel, recipient) paged at this level


# ============================================================================ parsing
def is_clear(raw: dict[str, Any]) -> bool:
    """An mqtt-channel `{"action": "clear", ...}`: sent when an alert is acknowledged or
    resolved so that automations withdraw the phone notification; not a page."""
    if raw.get("channel") != "mqtt":
        return False
    try:
        body = json.loads(str(raw.get("text", "")))
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("action") == "clear"


def parse_page(raw: dict[str, Any]) -> Page | None:
    """A sink's raw record (see chaos_soak.py's sinks) as a Page; None when it carries
    no soak tag (a page the soak cannot attribute)."""
    channel = raw["channel"]
    text = str(raw.get("text", ""))
    recipient = str(raw.get("recipient", ""))
    if channel == "slack":
        # "<mention> <slack block>": mention_users is empty, so the mention is the recipient.
        recipient = text.split(" ", 1)[0].removeprefix("@")
    elif channel == "mqtt":
        try:
            body = json.loads(text)
        except ValueError:
            return None
        recipient, text = str(body.get("recipient", "")), str(body.get("text", ""))
    match = TAG.search(text)
    if match is None:
        return None
    kind, level, ids = match.groups()
    return Page(
        at=float(raw["at"]),
        channel=channel,
        recipient=recipient,
        kind=kind,
        level=int(level),
        alert_ids=tuple(i for i in ids.split(",") if i),
    )


# ============================================================================ windows
def exposed_to_broker_kill(msg: Msg, kills: list[Kill], save_s: float) -> bool:
    """Could a broker kill -9 have lost (or replayed) this message? Mosquitto writes its
    persistence file every `save_s` seconds, so a kill loses what it PUBACKed since the
    last save and replays what it had saved as queued. A message is exposed to a broker
    kill from its send until two save intervals (and a second of slack) after its PUBACK.
    """
    until = (msg.puback if msg.puback is not None else msg.sent) + 2 * save_s + 1.0
    return any(k.target == BROKER and msg.sent <= k.at <= until for k in kills)


def service_kill_near(at: float, kills: list[Kill], window_s: float) -> Kill | None:
    """The service kill within `window_s` of `at` (a page's first arrival): the kill fell
    between the provider's answer and the settle, the documented at-least-once window."""
    near = [k for k in kills if k.target == SERVICE and abs(k.at - at) <= window_s]
    return min(near, key=lambda k: abs(k.at - at)) if near else None


# ============================================================================ alerts
@dataclass
class AlertVerdict:
    sent: int = 0
    stored: int = 0
    lost: list[str] = field(default_factory=list)  # types sent, never stored
    lost_broker: list[str] = field(default_factory=list)  # ... exposed to a broker kill
    wrong: list[str] = field(default_factory=list)  # "type: expected X, is Y"
    wrong_broker: list[str] = field(default_factory=list)
    count_high: list[str] = field(default_factory=list)  # more repeats than sent
    count_low: list[str] = field(default_factory=list)
    count_broker: list[str] = field(default_factory=list)  # off, exposed to a broker kill


def expected_state(sent: SentAlert) -> str:
    """The state the last message the broker accepted asks for: resolved, acknowledged,
    or open (escalated to the last level by the end of the drain)."""
    if sent.resolve is not None and sent.resolve.puback is not None:
        return "resolved"
    if sent.ack is not None and sent.ack.puback is not None:
        return "acknowledged"
    return "escalated"


def judge_alerts(
    sent: dict[str, SentAlert],
    stored: dict[str, StoredAlert],  # by type
    kills: list[Kill],
    *,
    last_level: int,
    save_s: float,
) -> AlertVerdict:
    out = AlertVerdict(sent=len(sent), stored=sum(1 for t in sent if t in stored))
    for atype, s in sorted(sent.items()):
        exposed = any(exposed_to_broker_kill(m, kills, save_s) for m in s.messages())
        alert = stored.get(atype)
        if alert is None:
            (out.lost_broker if exposed else out.lost).append(atype)
            continue
        want = expected_state(s)
        ok = alert.state == want and (want != "escalated" or alert.level == last_level)
        if not ok:
            note = f"{alert.id}: expected {want}, is {alert.state} at level {alert.level}"
            (out.wrong_broker if exposed else out.wrong).append(note)
        firing = len([m for m in s.firing if m.puback is not None])
        if alert.count != firing:
            note = f"{alert.id}: count {alert.count}, sent {firing}"
            if any(exposed_to_broker_kill(m, kills, save_s) for m in s.firing):
                out.count_broker.append(note)
            else:
                (out.count_high if alert.count > firing else out.count_low).append(note)
    return out


# ============================================================================ pages
Key = tuple[str, int, str, str]  # (alert id, level, channel, recipient)


@dataclass
class PageVerdict:
    expected: int = 0  # required pages
    allowed: int = 0  # within the race margin: may or may not come
    received: int = 0  # pages (per alert named) that the sinks got
    missed: list[Key] = field(default_factory=list)
    missed_broker: list[Key] = field(default_factory=list)  # mqtt pages a broker kill ate
    doubled: list[Key] = field(default_factory=list)
    doubled_window: list[tuple[Key, float]] = field(default_factory=list)  # + the kill time
    # mqtt pages the broker delivered again after its own kill (MQTT's at-least-once)
    doubled_broker: list[tuple[Key, float]] = field(default_factory=list)
    late: list[tuple[Key, float, float]] = field(default_factory=list)  # key, due, lateness s
    # Due less than `late_s` before a service kill or while the service was down, and
    # sent within `late_s` of it being online again: late by the restart itself (a
    # single replica cannot do better).
    late_restart: list[tuple[Key, float, float]] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)  # every required page's, seconds
    unexpected: list[tuple[Key, str]] = field(default_factory=list)  # key, why
    unattributed: int = 0  # pages without the soak's tag
    clears: int = 0  # mqtt {"action": "clear"} messages: they withdraw a page, not pages


def level_verdict(due_ms: int, stop_ms: int | None, end_ms: int, margin_ms: int) -> str:
    """required | allowed | unexpected, for a level due at `due_ms` of an alert whose
    escalation stopped (ack or resolve stored) at `stop_ms`. Inside the margin either
    way is right: the ack raced the level's timer."""
    if stop_ms is None:
        return "required" if due_ms < end_ms - margin_ms else "allowed"
    if due_ms < stop_ms - margin_ms:
        return "required"
    if due_ms <= stop_ms + margin_ms:
        return "allowed"
    return "unexpected"


def judge_pages(
    stored: dict[str, StoredAlert],  # by id
    pages: list[Page | None],
    levels: list[Level],
    kills: list[Kill],
    *,
    end: float,
    margin_s: float = 2.0,
    late_s: float = 2.0,
    window_s: float = 1.0,
    save_s: float = 1.0,
) -> PageVerdict:
    out = PageVerdict()
    arrivals = _attribute(out, stored, pages, levels)
    end_ms, margin_ms = int(end * 1000), int(margin_s * 1000)
    for alert in stored.values():
        for number, level in enumerate(levels):
            due_ms = alert.opened_ms + int(level.delay * 1000)
            verdict = level_verdict(due_ms, alert.stop_ms, end_ms, margin_ms)
            # When this level's batch went out: its first page on any channel.
            sent_at = min(
                (
                    min(a)
                    for ch, r in level.targets
                    if (a := arrivals.get((alert.id, number, ch, r)))
                ),
                default=None,
            )
            for channel, recipient in level.targets:
                key = (alert.id, number, channel, recipient)
                got = sorted(arrivals.get(key, []))
                if verdict == "required":
                    out.expected += 1
                elif verdict == "allowed":
                    out.allowed += 1
                if verdict == "unexpected":
                    out.unexpected.extend((key, "due after the ack/resolve") for _ in got)
                elif got:
                    _judge_arrivals(
                        out,
                        key,
                        got,
                        required=verdict == "required",
                        due=due_ms / 1000,
                        kills=kills,
                        late_s=late_s,
                        window_s=window_s,
                        save_s=save_s,
                    )
                elif verdict == "required":
                    ate = channel == "mqtt" and broker_ate(sent_at, kills)
                    (out.missed_broker if ate else out.missed).append(key)
    return out


def _attribute(
    out: PageVerdict,
    stored: dict[str, StoredAlert],
    pages: list[Page | None],
    levels: list[Level],
) -> dict[Key, list[float]]:
    """Arrival times per (alert, level, channel, recipient); what cannot be one of the
    policy's pages of a stored alert goes to `out.unexpected` (or `unattributed`)."""
    arrivals: dict[Key, list[float]] = defaultdict(list)
    for page in pages:
        if page is None:
            out.unattributed += 1
            continue
        for alert_id in page.alert_ids:
            out.received += 1
            key = (alert_id, page.level, page.channel, page.recipient)
            if page.kind != "alert":
                out.unexpected.append((key, f"a {page.kind} notice"))
            elif alert_id not in stored:
                out.unexpected.append((key, "an alert Redis does not have"))
            elif page.level >= len(levels) or (
                (page.channel, page.recipient) not in levels[page.level].targets
            ):
                out.unexpected.append((key, "a recipient the level does not page"))
            else:
                arrivals[key].append(page.at)
    return arrivals


def broker_ate(sent_at: float | None, kills: list[Kill], window_s: float = 0.5) -> bool:
    """Did a broker kill take an `mqtt` page the service published? Only if the level's
    batch went out (its other channels' first page) in the `window_s` before the kill:
    the broker had PUBACKed the page and not yet passed it on. A page published after the
    kill (the broker down, or back without the service reconnected yet) is the service's
    to retry (issue 9, point 5), so it counts as missed."""
    if sent_at is None:
        return False
    return any(k.target == BROKER and 0 <= k.at - sent_at <= window_s for k in kills)


def _judge_arrivals(
    out: PageVerdict,
    key: Key,
    got: list[float],
    *,
    required: bool,
    due: float,
    kills: list[Kill],
    late_s: float,
    window_s: float,
    save_s: float,
) -> None:
    if len(got) > 1:
        # The one extra copy the docs allow: a service kill between the provider's answer
        # (about when the sink got the first copy) and the settle.
        kill = service_kill_near(got[0], kills, window_s)
        # An mqtt page the broker had saved as queued for the sink and sent again after
        # its own kill, or the service's client sent again, unacknowledged by the dead
        # broker: MQTT's at-least-once, not the service's settle.
        broker = [
            k
            for k in kills
            if k.target == BROKER and key[2] == "mqtt" and got[0] <= k.at <= got[0] + 2 * save_s + 1
        ]
        if kill is not None and len(got) == 2 and got[1] > kill.at:
            out.doubled_window.append((key, kill.at))
        elif broker and len(got) == 2 and got[1] > broker[0].at:
            out.doubled_broker.append((key, broker[0].at))
        else:
            out.doubled.append(key)
    if required:
        lateness = got[0] - due
        out.lateness.append(lateness)
        if lateness > late_s:
            # The kill cut into the page's own `late_s` (or it fell due while the service
            # was down), and it went out within `late_s` of the service being back.
            by_restart = any(
                k.target == SERVICE
                and k.online is not None
                and k.at - late_s <= due <= k.online
                and got[0] <= k.online + late_s
                for k in kills
            )
            (out.late_restart if by_restart else out.late).append((key, due, lateness))


# ============================================================================ summaries
def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def late_by_kill(
    late: list[tuple[Key, float, float]], kills: list[Kill], t0: float
) -> Counter[str]:
    """Late pages by the first kill from 2 s before their due time to their arrival (the
    one that started the trouble), named `<target> +<seconds after t0>`; "no kill" when
    none fell in between."""
    out: Counter[str] = Counter()
    for _key, due, lateness in late:
        near = [k for k in kills if due - 2.0 <= k.at <= due + lateness]
        out[f"{near[0].target} +{near[0].at - t0:.1f}s" if near else "no kill"] += 1
    return out
