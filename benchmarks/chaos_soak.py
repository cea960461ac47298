#!/usr/bin/env python3
"""Chaos soak (issue 9): alerts at a steady rate while the service, the broker and Redis
are killed with SIGKILL at random; then every alert's final state and every page is
checked against what was sent and what was due.

    .venv/bin/python benchmarks/chaos_soak.py [--minutes 3] [--seed 1] [--rate 200]
        [--new-rate 6] [--kill-every 20 40] [--drain 20] [--json out.json]

Everything runs on 127.0.0.1, started here and stopped here (also on Ctrl-C, and by a
watchdog if the run overstays): Mosquitto with persistence, Redis with AOF
(`appendfsync always`), an SMTP sink (aiosmtpd) and an HTTP sink for Slack and Twilio
(the test suite's recorders, in a process of their own, which also subscribes to the
`mqtt` channel's topics), and the service (`python -m homealert_mqtt run`). See
benchmarks/README.md for what is counted and how to read the result.

Exit code 1 when an alert was lost or ended in the wrong state, or a page was missed,
doubled or late (outside the windows the output names); 2 when the run could not be
carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from chaos_ledger import (  # noqa: E402 - beside this script
    BROKER,
    REDIS,
    SERVICE,
    AlertVerdict,
    Kill,
    Level,
    Msg,
    PageVerdict,
    SentAlert,
    StoredAlert,
    judge_alerts,
    judge_pages,
    late_by_kill,
    parse_page,
    percentile,
    with_online,
)

HOST = "127.0.0.1"
SID = "ACsoak000000000000000000000000000"
FROM = "+15559999999"
CHANNELS = ("email", "slack", "sms", "phone", "mqtt")
ACK_GIVE_UP_S = 30.0  # an ack waits this long for the alert to show up, then is not sent


def recipients(level: int) -> dict[str, str]:
    """One recipient group per level (`l<n>`), one address per channel: who was paged
    names the level, and the template names it too."""
    return {
        "email": f"l{level}@soak.test",
        "slack": f"soak_l{level}",
        "sms": f"+1555000000{level}",
        "phone": f"+1555000010{level}",
        "mqtt": f"l{level}",  # the mqtt channel addresses the group by name
    }


def policy_levels(delays: list[float]) -> list[Level]:
    return [
        Level(delay, tuple((ch, recipients(n)[ch]) for ch in CHANNELS))
        for n, delay in enumerate(delays)
    ]


# Every block names the kind, the level and the alert ids, so a page is attributable.
TEMPLATE = """{% block tag %}SOAK:{{ kind }}:{{ level }}:{% for a in alerts %}{{ a.id }}\
{{ "," if not loop.last }}{% endfor %}:END{% endblock %}
{% block subject %}{{ self.tag() }}{% endblock %}
{% block text %}{{ self.tag() }}{% endblock %}
{% block html %}<p>{{ self.tag() }}</p>{% endblock %}
{% block short %}{{ self.tag() }}{% endblock %}
{% block voice %}{{ self.tag() }}{% endblock %}
{% block slack %}{{ self.tag() }}{% endblock %}
"""


# ============================================================================ the sinks
def role_sinks(out: Path, base: str, mqtt_port: int, client_id: str, max_seconds: float) -> None:
    """SMTP, HTTP (Slack + Twilio) and MQTT (`<base>/notify/+`) sinks in one process.
    Prints {"smtp": port, "http": port}, then appends one JSON line per page to `out`
    (flushed, so a crash loses nothing) until SIGTERM."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from aiohttp import web  # noqa: PLC0415
    from aiosmtpd.controller import Controller  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    from homealert_mqtt.embedded import free_port  # noqa: PLC0415
    from tests.notify.conftest import HttpRecorder, SmtpRecorder, serving  # noqa: PLC0415

    lock = threading.Lock()
    sink = out.open("a", encoding="utf-8")

    def record(**row: Any) -> None:
        line = json.dumps(row) + "\n"
        with lock:
            sink.write(line)
            sink.flush()

    class TimedSmtp(SmtpRecorder):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            at = time.time()
            answer = await super().handle_DATA(server, session, envelope)
            message, (_sender, rcpts) = self.messages[-1], self.envelopes[-1]
            body = message.get_body(("plain",))
            text = f"{message['Subject']}\n{body.get_content() if body is not None else ''}"
            for rcpt in rcpts:
                record(at=at, channel="email", recipient=rcpt, text=text)
            self.messages.clear()  # a long soak: keep nothing in memory
            self.envelopes.clear()
            return answer

    class TimedHttp(HttpRecorder):
        async def handle(self, request: web.Request) -> web.StreamResponse:
            at = time.time()
            if request.path.startswith("/slack"):
                body = await request.json()
                record(at=at, channel="slack", text=str(body.get("text", "")))
            elif request.path.endswith(("/Messages.json", "/Calls.json")):
                form = await request.post()
                sms = request.path.endswith("/Messages.json")
                record(
                    at=at,
                    channel="sms" if sms else "phone",
                    recipient=str(form.get("To", "")),
                    text=str(form.get("Body" if sms else "Twiml", "")),
                )
            answer = await super().handle(request)
            self.requests.clear()
            return answer

    def on_connect(client: Any, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        client.subscribe(f"{base}/notify/+", qos=1)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        record(at=time.time(), channel="mqtt", text=msg.payload.decode("utf-8", "replace"))

    # A persistent session: pages published while it reconnects wait in the broker.
    notify = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,
    )
    notify.on_connect = on_connect
    notify.on_message = on_message
    notify.reconnect_delay_set(0.1, 1)
    notify.connect_async(HOST, mqtt_port, keepalive=10)
    notify.loop_start()

    smtp = TimedSmtp(port=free_port())
    controller = Controller(smtp, hostname=HOST, port=smtp.port)
    controller.start()

    async def serve() -> None:
        http = TimedHttp()
        async with serving(http):
            print(json.dumps({"smtp": smtp.port, "http": http.url}), flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max_seconds)

    try:
        asyncio.run(serve())
    finally:
        controller.stop()
        notify.loop_stop()
        notify.disconnect()
        with lock:
            sink.close()


# ============================================================================ MQTT sides
def mqtt_client(name: str, *, clean: bool = True) -> Any:
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=name,
        protocol=mqtt.MQTTv311,
        clean_session=clean,
    )
    client.reconnect_delay_set(0.1, 1)
    return client


class Observer:
    """Watches `<base>/status` and the retained `<base>/alert/+` states: which alert id
    a type got (acks need it) and whether the service is online."""

    def __init__(self, port: int, base: str, run_id: str) -> None:
        self.base = base
        self.ids: dict[str, str] = {}  # type -> alert id
        self.states: dict[str, str] = {}  # alert id -> last state seen
        self.online = threading.Event()
        self.online_times: list[float] = []  # every `online` on <base>/status
        self.client = mqtt_client(f"soak-observer-{run_id}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(HOST, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: Any, *_a: Any) -> None:
        client.subscribe([(f"{self.base}/status", 1), (f"{self.base}/alert/+", 1)])

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if msg.topic == f"{self.base}/status":
            if msg.payload == b"online":
                self.online_times.append(time.time())
                self.online.set()
            else:
                self.online.clear()
            return
        if not msg.payload:
            return
        with contextlib.suppress(ValueError, AttributeError, KeyError):
            state = json.loads(msg.payload)
            self.ids.setdefault(state["type"], state["id"])
            self.states[state["id"]] = state["state"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass(order=True)
class Action:
    at: float
    seq: int
    kind: str  # ack | resolve
    atype: str


class Publisher:
    """Sends `rate` messages/s: `new_rate` new alerts/s, each with its planned ack and/or
    resolve (or neither), and repeats of open alerts filling the rest. QoS 1 on a
    persistent session: paho keeps what the broker has not PUBACKed and sends it again
    after a reconnect, so a broker restart loses nothing on the way in."""

    def __init__(
        self, port: int, base: str, run_id: str, rng: random.Random, observer: Observer
    ) -> None:
        self.base, self.rng, self.observer = base, rng, observer
        self.sent: dict[str, SentAlert] = {}
        self.skipped_acks = 0
        self._open: list[str] = []  # types that may still repeat
        self._plan: list[Action] = []
        self._pending: list[tuple[int, Msg]] = []  # (mid, Msg) not PUBACKed yet
        self._pubacks: dict[int, float] = {}  # mid -> PUBACK time, from paho's thread
        self._seq = 0
        self.client = mqtt_client(f"soak-publisher-{run_id}", clean=False)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)  # unbounded: nothing dropped while down
        self.client.on_publish = self._on_publish
        self.client.connect_async(HOST, port, keepalive=10)
        self.client.loop_start()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        # Also called for a message paho sent again after a reconnect (with DUP).
        self._pubacks[mid] = time.time()

    def _publish(self, topic: str, payload: dict[str, Any]) -> Msg:
        msg = Msg(sent=time.time())
        # While the broker is down this returns MQTT_ERR_NO_CONN and paho keeps the
        # message for the next connection: the mid still identifies it.
        info = self.client.publish(topic, json.dumps(payload), qos=1)
        self._pending.append((info.mid, msg))
        return msg

    def note_pubacks(self) -> int:
        """Stamp the messages PUBACKed since the last call; returns how many wait."""
        waiting = []
        for mid, msg in self._pending:
            at = self._pubacks.pop(mid, None)
            if at is None:
                waiting.append((mid, msg))
            else:
                msg.puback = at
        self._pending = waiting
        return len(waiting)

    def _new(self, now: float) -> None:
        atype = f"t{len(self.sent):06d}"
        alert = SentAlert(atype)
        self.sent[atype] = alert
        alert.firing.append(self._firing(atype))
        self._open.append(atype)
        fate, rng = self.rng.random(), self.rng
        # 15 % stay open to the end; the rest are acked and/or resolved 0.5-9 s in,
        # so that acks land before, near and after each level's due time.
        ack_at = now + rng.uniform(0.5, 9) if 0.15 <= fate < 0.70 else None
        resolve_at = None
        if 0.45 <= fate < 0.70 and ack_at is not None:
            resolve_at = ack_at + rng.uniform(0.5, 4)
        elif fate >= 0.70:
            resolve_at = now + rng.uniform(0.5, 9)
        for at, kind in ((ack_at, "ack"), (resolve_at, "resolve")):
            if at is not None:
                self._seq += 1
                heapq.heappush(self._plan, Action(at, self._seq, kind, atype))

    def _firing(self, atype: str, status: str = "firing") -> Msg:
        return self._publish(
            f"{self.base}/in",
            {
                "source": "soak",
                "type": atype,
                "severity": "critical",
                "status": status,
                "message": "chaos soak",
            },
        )

    def _due_action(self, now: float) -> bool:
        """Send the next due ack or resolve, if any; False when none is due."""
        while self._plan and self._plan[0].at <= now:
            action = heapq.heappop(self._plan)
            alert = self.sent[action.atype]
            if action.kind == "resolve":
                alert.resolve = self._firing(action.atype, "resolved")
                with contextlib.suppress(ValueError):
                    self._open.remove(action.atype)
                return True
            alert_id = self.observer.ids.get(action.atype)
            if alert_id is None:  # not stored yet (or not seen): ack it when it is
                if now - action.at < ACK_GIVE_UP_S:
                    self._seq += 1
                    heapq.heappush(self._plan, Action(now + 0.5, self._seq, "ack", action.atype))
                else:
                    self.skipped_acks += 1
                continue
            alert.ack = self._publish(
                f"{self.base}/alert/{alert_id}/ack", {"by": "soak", "note": action.atype}
            )
            return True
        return False

    def run(self, seconds: float, rate: float, new_rate: float, stop: threading.Event) -> None:
        start = time.time()
        next_new, tick, n = start, 1.0 / rate, 0
        while not stop.is_set():
            target = start + n * tick
            if target - start >= seconds:
                break
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            if now >= next_new:
                self._new(now)
                next_new += 1.0 / new_rate
            elif not self._due_action(now):
                if self._open:
                    atype = self._open[self.rng.randrange(len(self._open))]
                    self.sent[atype].firing.append(self._firing(atype))
                else:
                    self._new(now)
            n += 1
            if n % 20 == 0:
                self.note_pubacks()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ============================================================================ the run
class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        from tests.servers import MosquittoServer, RedisServer  # noqa: PLC0415

        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="homealert-chaos-"))
        self.run_id = uuid.uuid4().hex[:8]
        self.base = f"soak{self.run_id}"
        self.prefix = f"soak{self.run_id}"
        save = args.broker_save

        class Broker(MosquittoServer):
            def config(self) -> str:
                text = super().config()
                assert "autosave_interval 60\n" in text
                return text.replace("autosave_interval 60\n", f"autosave_interval {save}\n")

        self.redis = RedisServer(self.tmp / "redis")  # appendfsync always (see README)
        self.broker = Broker(self.tmp / "mosquitto")
        self.service: subprocess.Popen[bytes] | None = None
        self.sinks: subprocess.Popen[bytes] | None = None
        self.smtp_port = 0
        self.http_url = ""
        self.config = self.tmp / "homealert.yaml"
        self.pages_file = self.tmp / "pages.jsonl"
        self.kills: list[Kill] = []
        self.lock = threading.Lock()  # kills vs. the final clean-up

    # -- processes
    def start_sinks(self) -> None:
        self.sinks = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "chaos_soak.py"),
                "--role",
                "sinks",
                "--out",
                str(self.pages_file),
                "--base",
                self.base,
                "--mqtt-port",
                str(self.broker.port),
                "--client-id",
                f"soak-notify-{self.run_id}",
                "--max-seconds",
                str(self.args.max_seconds),
            ],
            stdout=subprocess.PIPE,
            stderr=(self.tmp / "sinks.log").open("ab"),
            stdin=subprocess.DEVNULL,
            cwd=str(REPO),
        )
        assert self.sinks.stdout is not None
        line = self.sinks.stdout.readline()
        try:
            ports = json.loads(line)
        except ValueError:
            fail(f"the sinks did not start; see {self.tmp}/sinks.log")
        self.smtp_port, self.http_url = int(ports["smtp"]), str(ports["http"])

    def write_config(self) -> None:
        levels = [
            {"delay": d, "channels": list(CHANNELS), "groups": [f"l{n}"]}
            for n, d in enumerate(self.args.levels)
        ]
        twilio = {
            "enabled": True,
            "account_sid": SID,
            "auth_token": "soak-token",
            "from_number": FROM,
            "api_base_url": self.http_url,
            "timeout": 5,
        }
        templates = self.tmp / "templates"
        templates.mkdir()
        (templates / "soak.j2").write_text(TEMPLATE)
        escalation: dict[str, Any] = {
            "policies": dict.fromkeys(("p1", "p2", "p3", "p4", "p5", "default"), levels),
            "rate_limits": {ch: {"count": 100_000_000, "period": 3600} for ch in CHANNELS},
            "notify_resolved": False,
        }
        if self.args.lease:
            escalation["lease"] = self.args.lease
        config = {
            "mqtt": {
                "url": f"mqtt://{HOST}:{self.broker.port}",
                "base_topic": self.base,
                "client_id": f"soak-service-{self.run_id}",
            },
            "redis": {"url": f"redis://{HOST}:{self.redis.port}/0", "key_prefix": self.prefix},
            "alerts": {"grouping": {"enabled": False}, "escalation": escalation},
            "channels": {
                "email": {
                    "enabled": True,
                    "smtp_server": HOST,
                    "smtp_port": self.smtp_port,
                    "security": "none",
                    "username": None,
                    "password": None,
                    "from_address": "homealert@soak.test",
                    "timeout": 5,
                },
                "slack": {
                    "enabled": True,
                    "webhook_url": f"{self.http_url}/slack/hook",
                    "mention_users": {f"p{i}": [] for i in range(1, 6)},
                    "timeout": 5,
                },
                "sms": twilio,
                "phone": twilio,
                "mqtt": {"enabled": True, "timeout": 5},
            },
            "recipients": {
                "groups": {
                    f"l{n}": {ch: [r] for ch, r in recipients(n).items() if ch != "mqtt"}
                    for n in range(len(levels))
                }
            },
            "templates": {
                "base_dir": str(templates),
                "default_template": "soak.j2",
                "custom_templates": {},
            },
            "homeassistant": {"discovery": False},
            "http": {"enabled": False},
            "zeroconf": {"announce": False},
        }
        self.config.write_text(json.dumps(config, indent=1))  # JSON is YAML

    def check_config(self) -> None:
        check = subprocess.run(
            [sys.executable, "-m", "homealert_mqtt", "check-config", "--config", str(self.config)],
            capture_output=True,
            text=True,
            cwd=str(self.tmp),
            timeout=60,
            check=False,
        )
        if check.returncode != 0:
            fail(f"the soak's config is invalid:\n{check.stdout}{check.stderr}")

    def start_service(self) -> None:
        from homealert_mqtt.embedded import spawn  # noqa: PLC0415

        # spawn(): tied to this process (it never outlives the soak), stdout and stderr
        # into one log, its own session (Ctrl-C reaches the soak, which stops it).
        self.service = spawn(
            [sys.executable, "-m", "homealert_mqtt", "run", "--config", str(self.config)],
            self.tmp / "service.log",
        )

    def kill(self, target: str) -> Kill:
        """SIGKILL one of the three, then start it again at once (same port, same data)."""
        with self.lock:
            at = time.time()
            if target == SERVICE and self.service is not None:
                self.service.kill()
                self.service.wait(10)
                self.start_service()
            elif target == REDIS:
                self.redis.kill()
                self.redis.start()
            elif target == BROKER and self.broker.process is not None:
                self.broker.process.kill()
                self.broker.process.wait(10)
                self.broker.process = None
                self.broker.start()
            kill = Kill(at, target, time.time())
            self.kills.append(kill)
            return kill

    def stop_all(self) -> None:
        from homealert_mqtt.embedded import stop  # noqa: PLC0415

        with self.lock:
            for proc in (self.service, self.sinks):
                if proc is not None:
                    stop(proc, 15)
            self.broker.stop()
            self.redis.stop()

    # -- Redis, at the end
    def stored_alerts(self) -> list[StoredAlert]:
        from redis import Redis  # noqa: PLC0415

        from homealert_mqtt.store.keys import Keys  # noqa: PLC0415

        keys = Keys.for_prefix(self.prefix)
        fields = ("type", "state", "count", "escalation_level", "opened_at")
        more = ("acknowledged_at", "resolved_at")
        client = Redis(host=HOST, port=self.redis.port, decode_responses=True)
        out: list[StoredAlert] = []
        try:
            ids = [str(i) for i in client.zrange(keys.retention, 0, -1)]
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                pipe = client.pipeline(transaction=False)
                for alert_id in chunk:
                    pipe.hmget(keys.alert(alert_id), *fields, *more)
                for alert_id, row in zip(chunk, pipe.execute(), strict=True):
                    if row[0] is None:
                        continue
                    atype, state, count, level, opened, acked, resolved = row
                    out.append(
                        StoredAlert(
                            id=alert_id,
                            type=atype,
                            state=state,
                            count=int(count or 0),
                            level=int(level or 0),
                            opened_ms=int(opened),
                            acked_ms=int(acked) if acked else None,
                            resolved_ms=int(resolved) if resolved else None,
                        )
                    )
            return out
        finally:
            client.close()

    def retained_states(self, timeout: float = 30) -> dict[str, str]:
        """alert id -> state, as a fresh subscriber gets the retained topics."""
        got: dict[str, str] = {}
        last = [time.monotonic()]
        client = mqtt_client(f"soak-retained-{self.run_id}")

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            last[0] = time.monotonic()
            if msg.payload:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    got[msg.topic.rsplit("/", 1)[1]] = json.loads(msg.payload)["state"]

        client.on_message = on_message
        client.on_connect = lambda c, *_a: c.subscribe(f"{self.base}/alert/+", qos=1)
        client.connect(HOST, self.broker.port, keepalive=10)
        client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and time.monotonic() - last[0] < 2:
            time.sleep(0.1)
        client.loop_stop()
        client.disconnect()
        return got


class LogCounter(threading.Thread):
    """Counts the service's log lines (stdout and stderr) per minute of the soak, and
    the tracebacks among them, by reading the log file as it grows."""

    def __init__(self, path: Path, t0: float) -> None:
        super().__init__(daemon=True)
        self.path, self.t0 = path, t0
        self.per_minute: Counter[int] = Counter()
        self.tracebacks = 0
        self.shapes: Counter[str] = Counter()
        self.ours = 0  # lines of homealert_mqtt's own loggers
        self.stop = threading.Event()
        self._offset = 0

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.read()
        self.read()

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        cut = chunk.rfind(b"\n") + 1
        self._offset += cut
        lines = chunk[:cut].decode("utf-8", "replace").splitlines()
        minute = int((time.time() - self.t0) // 60)
        self.per_minute[minute] += len(lines)
        for line in lines:
            if line.startswith("Traceback"):
                self.tracebacks += 1
            self.shapes[shape(line)] += 1
            self.ours += " homealert_mqtt" in line


def shape(line: str) -> str:
    """A log line without its times and numbers, to count repeats of one message."""
    line = re.sub(r"^\S+ \S+ ", "", line) if re.match(r"^\d{4}-\d\d-\d\d", line) else line
    return re.sub(r"\d+(\.\d+)?", "N", line)[:120]


def fail(message: str) -> None:
    raise SystemExit(f"chaos soak failed: {message}")


# ============================================================================ main
def chaos(soak: Soak, rng: random.Random, sender: threading.Thread, t0: float) -> None:
    """Kill -9 and restart one of the three at random intervals while `sender` runs: in
    rounds of three, each round in a random order (so a short soak still hits each)."""
    low, high = soak.args.kill_every
    order: list[str] = []
    while True:
        sender.join(rng.uniform(low, high))
        if not sender.is_alive():
            return
        if not order:
            order = rng.sample((SERVICE, BROKER, REDIS), 3)
        target = order.pop()
        try:
            kill = soak.kill(target)
        except Exception as err:  # noqa: BLE001 - reported, the soak carries on
            print(f"  restart of {target} failed: {err!r}", flush=True)
            continue
        print(
            f"  +{kill.at - t0:6.1f} s  kill -9 {target:<8} back after {kill.back - kill.at:.2f} s",
            flush=True,
        )


def service_code() -> str:
    """Where the service's `homealert_mqtt` comes from (PYTHONPATH may point at a copy)."""
    where = subprocess.run(
        [sys.executable, "-c", "import homealert_mqtt; print(homealert_mqtt.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return str(Path(where.stdout.strip()).parent)


def service_environment() -> None:
    """The service (a child) runs this checkout's package, and no HOMEALERT_* or TWILIO_*
    variable of the caller's overrides the soak's config."""
    for name in [n for n in os.environ if n.startswith(("HOMEALERT_", "TWILIO_"))]:
        del os.environ[name]
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [path, str(REPO)]))
    os.environ["PYTHONUNBUFFERED"] = "1"


def run(args: argparse.Namespace) -> int:
    from bench_servers import watchdog  # noqa: PLC0415 - beside this script

    service_environment()

    soak = Soak(args)
    # `python -m` puts the working directory first on sys.path: from the run's folder,
    # the service imports the package PYTHONPATH names (or this checkout's), not the
    # one in whatever folder the soak was started from.
    os.chdir(soak.tmp)
    dog = watchdog(args.max_seconds, soak.tmp, soak.stop_all)
    rng = random.Random(args.seed)
    work_rng, kill_rng = random.Random(rng.random()), random.Random(rng.random())
    print(f"chaos soak: logs in {soak.tmp}", flush=True)
    observer: Observer | None = None
    publisher: Publisher | None = None
    counter: LogCounter | None = None
    try:
        soak.redis.start()
        soak.broker.start()
        soak.start_sinks()
        soak.write_config()
        soak.check_config()
        soak.start_service()
        print(f"service code: {service_code()}", flush=True)
        observer = Observer(soak.broker.port, soak.base, soak.run_id)
        if not observer.online.wait(60):
            fail(f"the service did not come online; see {soak.tmp}/service.log")
        publisher = Publisher(soak.broker.port, soak.base, soak.run_id, work_rng, observer)
        t0 = time.time()
        counter = LogCounter(soak.tmp / "service.log", t0)
        counter.start()
        seconds = args.minutes * 60
        print(
            f"sending {args.rate:g} msgs/s ({args.new_rate:g} new alerts/s) for {seconds:g} s;"
            f" a kill -9 every {args.kill_every[0]:g}-{args.kill_every[1]:g} s:",
            flush=True,
        )
        # Kills and restarts run on this thread: a child started with PR_SET_PDEATHSIG
        # (embedded.spawn) gets SIGTERM when the *thread* that started it ends.
        sender = threading.Thread(
            target=publisher.run, args=(seconds, args.rate, args.new_rate, threading.Event())
        )
        sender.start()
        chaos(soak, kill_rng, sender, t0)
        sender.join()
        sent_end = time.time()
        deadline = time.monotonic() + 60
        while publisher.note_pubacks() and time.monotonic() < deadline:
            time.sleep(0.1)
        unacked = publisher.note_pubacks()
        print(f"draining {args.drain:g} s (nothing killed) ...", flush=True)
        time.sleep(max(0.0, sent_end + args.drain - time.time()))
        end = time.time()
        stored = soak.stored_alerts()
        retained = soak.retained_states()
        counter.stop.set()
        counter.join()
    finally:
        for part in (publisher, observer):
            if part is not None:
                part.close()
        soak.stop_all()
        dog.cancel()
    save_run(
        soak.tmp,
        {
            "t0": t0,
            "end": end,
            "levels": args.levels,
            "broker_save": args.broker_save,
            "kills": [k.__dict__ for k in with_online(soak.kills, observer.online_times)],
            "sent": {t: asdict(a) for t, a in publisher.sent.items()},
            "skipped_acks": publisher.skipped_acks,
            "unacked": unacked,
            "stored": [asdict(a) for a in stored],
            "retained": retained,
            "log": {
                "per_minute": [
                    counter.per_minute.get(m, 0)
                    for m in range(max(counter.per_minute, default=-1) + 1)
                ],
                "tracebacks": counter.tracebacks,
                "ours": counter.ours,
                "shapes": counter.shapes.most_common(8),
            },
        },
    )
    return analyse(soak.tmp, args)


def save_run(folder: Path, run: dict[str, Any]) -> None:
    """Everything the verdict is computed from (with pages.jsonl), for --reanalyse."""
    (folder / "run.json").write_text(json.dumps(run))


def load_run(folder: Path) -> dict[str, Any]:
    run: dict[str, Any] = json.loads((folder / "run.json").read_text())
    run["kills"] = [Kill(**k) for k in run["kills"]]
    run["stored"] = [StoredAlert(**a) for a in run["stored"]]
    run["sent"] = {
        t: SentAlert(
            type=a["type"],
            firing=[Msg(**m) for m in a["firing"]],
            ack=Msg(**a["ack"]) if a["ack"] else None,
            resolve=Msg(**a["resolve"]) if a["resolve"] else None,
        )
        for t, a in run["sent"].items()
    }
    return run


def analyse(folder: Path, args: argparse.Namespace) -> int:
    run = load_run(folder)
    pages_file = folder / "pages.jsonl"
    pages = [
        parse_page(json.loads(line))
        for line in pages_file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    levels = policy_levels(run["levels"])
    stored: list[StoredAlert] = run["stored"]
    alerts = judge_alerts(
        run["sent"],
        {a.type: a for a in stored},
        run["kills"],
        last_level=len(levels) - 1,
        save_s=run["broker_save"],
    )
    judged = judge_pages(
        {a.id: a for a in stored},
        pages,
        levels,
        run["kills"],
        end=run["end"],
        margin_s=args.margin,
        late_s=args.late,
        window_s=args.window,
        save_s=run["broker_save"],
    )
    return report(args, folder, run, alerts, judged)


def report(
    args: argparse.Namespace,
    folder: Path,
    run: dict[str, Any],
    alerts: AlertVerdict,
    pages: PageVerdict,
) -> int:
    sent: dict[str, SentAlert] = run["sent"]
    soak_kills: list[Kill] = run["kills"]
    t0: float = run["t0"]
    msgs = sum(len(s.messages()) for s in sent.values())
    acks = sum(1 for s in sent.values() if s.ack is not None)
    resolves = sum(1 for s in sent.values() if s.resolve is not None)
    kills = Counter(k.target for k in soak_kills)
    stored: list[StoredAlert] = run["stored"]
    retained_off = sum(1 for a in stored if run["retained"].get(a.id, "") != a.state)

    def show(items: list[Any], limit: int = 4) -> str:
        return "" if not items else "   e.g. " + "; ".join(str(i) for i in items[:limit])

    print()
    print(
        f"kills: {len(soak_kills)} ({kills[SERVICE]} service, {kills[BROKER]} broker,"
        f" {kills[REDIS]} redis)"
    )
    print(
        f"sent: {msgs} messages = {len(sent)} new alerts, "
        f"{msgs - len(sent) - acks - resolves} repeats, {acks} acks, {resolves} resolves"
        f" ({run['skipped_acks']} acks not sent: alert never seen); not PUBACKed at the end:"
        f" {run['unacked']}"
    )
    late_sorted = sorted(pages.late, key=lambda x: -x[2])
    rows = [
        ("alerts lost (sent, never stored)", len(alerts.lost), show(alerts.lost)),
        ("alerts in a wrong final state", len(alerts.wrong), show(alerts.wrong)),
        (
            "alerts with a wrong count (info)",
            len(alerts.count_high) + len(alerts.count_low),
            show(alerts.count_high + alerts.count_low),
        ),
        (
            "  in a broker kill's unsaved window: lost/wrong/count",
            f"{len(alerts.lost_broker)}/{len(alerts.wrong_broker)}/{len(alerts.count_broker)}",
            show(alerts.lost_broker + alerts.wrong_broker + alerts.count_broker, 3),
        ),
        (
            "pages expected (+ allowed in the race margin)",
            f"{pages.expected} (+{pages.allowed})",
            f"   received {pages.received}",
        ),
        ("pages missed (never arrived)", len(pages.missed), show(pages.missed)),
        ("  mqtt pages a broker kill took (not counted)", len(pages.missed_broker), ""),
        (
            f"pages late (> {args.late:g} s after due)",
            len(pages.late),
            show([(k, f"{lat:.1f}s") for k, _d, lat in late_sorted]),
        ),
        (
            "  late only by the service's restart (not counted)",
            len(pages.late_restart),
            show([(k, f"{lat:.1f}s") for k, _d, lat in pages.late_restart]),
        ),
        ("pages doubled", len(pages.doubled), show(pages.doubled)),
        (
            f"  doubled in the at-least-once window ({args.window:g} s)",
            len(pages.doubled_window),
            show(pages.doubled_window),
        ),
        (
            "  mqtt pages the broker sent again after its kill",
            len(pages.doubled_broker),
            show(pages.doubled_broker),
        ),
        ("pages unexpected", len(pages.unexpected), show(pages.unexpected)),
        ("pages not attributable (no soak tag)", pages.unattributed, ""),
        ("retained state differs from Redis (info)", retained_off, f"   of {len(stored)} stored"),
    ]
    print()
    for name, value, detail in rows:
        print(f"{name:<52}{value!s:>10}{detail}")
    lat = pages.lateness
    print(
        f"\nlateness of required pages (s): p50 {percentile(lat, 50):.2f}  p99"
        f" {percentile(lat, 99):.2f}  max {max(lat, default=float('nan')):.2f}"
    )
    by_alert = {a.id: a for a in stored}
    for name, keys in (
        ("missed", pages.missed),
        ("late", [k for k, _d, _l in late_sorted]),
        ("doubled", pages.doubled),
    ):
        if keys:
            channels = Counter(k[2] for k in keys)
            print(
                f"{name} pages by channel: "
                + ", ".join(f"{ch} {n}" for ch, n in sorted(channels.items()))
                + f"; by (alert, level): {level_summary(keys, by_alert, run)}"
            )
    if pages.late:
        print(
            "late pages by the last kill before their due time: "
            + ", ".join(f"{k}: {n}" for k, n in late_by_kill(pages.late, soak_kills, t0).items())
        )
    log = run["log"]
    print(
        f"service log lines per minute: {log['per_minute']} (homealert_mqtt's own:"
        f" {log['ours']}); tracebacks: {log['tracebacks']}; most frequent:"
    )
    for text, n in log["shapes"][:5]:
        print(f"  {n:>7} x {text}")
    print("kill timeline (s after the start):")
    for k in soak_kills:
        print(f"  +{k.at - t0:6.1f}  kill -9 {k.target:<8} back after {k.back - k.at:.2f} s")
    failures = {
        "lost": len(alerts.lost),
        "wrong state": len(alerts.wrong),
        "missed": len(pages.missed),
        "doubled": len(pages.doubled),
        "late": len(pages.late),
    }
    bad = {k: v for k, v in failures.items() if v}
    verdict = (
        "PASS (0 lost, 0 wrong state, 0 missed, 0 doubled, 0 late)"
        if not bad
        else "FAIL (" + ", ".join(f"{v} {k}" for k, v in bad.items()) + ")"
    )
    print(f"\nVERDICT: {verdict}; everything in {folder}")
    if args.json:
        result = {
            "failures": failures,
            "alerts": alerts.__dict__,
            "pages": {k: v for k, v in pages.__dict__.items() if k != "lateness"},
            "log": log,
            "kills": [k.__dict__ | {"t": k.at - t0} for k in soak_kills],
            "folder": str(folder),
        }
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 1 if bad else 0


def level_summary(
    keys: list[tuple[str, int, str, str]],
    alerts: dict[str, StoredAlert],
    run: dict[str, Any],
    limit: int = 8,
) -> str:
    """`<id> L<level> x<pages> (due +<s>, stop +<s>)`: one entry per (alert, level), in
    seconds after the start, to set beside the kill timeline."""
    t0, delays = run["t0"], run["levels"]
    counted = Counter((k[0], k[1]) for k in keys)
    parts = []
    for (alert_id, level), n in list(counted.items())[:limit]:
        alert = alerts[alert_id]
        due = alert.opened_ms / 1000 + delays[level] - t0
        stop = f"{alert.stop_ms / 1000 - t0:.1f}" if alert.stop_ms else "-"
        parts.append(f"{alert_id} L{level} x{n} (due +{due:.1f}, stop +{stop})")
    more = len(counted) - limit
    return "; ".join(parts) + (f"; ... {more} more" if more > 0 else "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--role"]:
        role = argparse.ArgumentParser()
        role.add_argument("--role", choices=("sinks",))
        role.add_argument("--out", type=Path, required=True)
        role.add_argument("--base", required=True)
        role.add_argument("--mqtt-port", type=int, required=True)
        role.add_argument("--client-id", required=True)
        role.add_argument("--max-seconds", type=float, default=600)
        ns = role.parse_args(argv)
        role_sinks(ns.out, ns.base, ns.mqtt_port, ns.client_id, ns.max_seconds)
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=3, help="sending time (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="workload and kill schedule")
    parser.add_argument("--rate", type=float, default=200, help="messages/s (default 200)")
    parser.add_argument(
        "--new-rate", type=float, default=6, help="of which new alerts/s (default 6)"
    )
    parser.add_argument(
        "--kill-every",
        type=float,
        nargs=2,
        default=(20.0, 40.0),
        metavar=("MIN", "MAX"),
        help="seconds between kills, uniform (default 20 40)",
    )
    parser.add_argument(
        "--levels",
        type=int,
        nargs="+",
        default=[0, 3, 6],
        help="escalation level delays in seconds (default 0 3 6)",
    )
    parser.add_argument("--lease", type=int, default=0, help="alerts.escalation.lease (0: default)")
    parser.add_argument("--drain", type=float, default=30, help="quiet seconds at the end")
    parser.add_argument("--late", type=float, default=2.0, help="late after due + this (s)")
    parser.add_argument("--margin", type=float, default=2.0, help="ack/due race margin (s)")
    parser.add_argument(
        "--window", type=float, default=1.0, help="at-least-once window around a service kill (s)"
    )
    parser.add_argument(
        "--broker-save", type=int, default=1, help="Mosquitto autosave_interval (s, default 1)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--reanalyse", metavar="DIR", type=Path, help="judge an earlier run's folder again"
    )
    parser.add_argument("--max-seconds", type=float, default=0, help="hard stop (default: auto)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or not 0 < args.new_rate <= args.rate or args.minutes <= 0:
        parser.error("--rate and --minutes must be positive, --new-rate in (0, rate]")
    if not 0 < args.kill_every[0] <= args.kill_every[1]:
        parser.error("--kill-every MIN MAX: 0 < MIN <= MAX")
    if args.drain < max(args.levels) + args.late + 2:
        parser.error("--drain must outlast the last level's delay + --late + 2 s")
    if args.reanalyse:
        return analyse(args.reanalyse, args)
    if not args.max_seconds:
        args.max_seconds = args.minutes * 60 + args.drain + 300
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
