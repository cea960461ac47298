#!/usr/bin/env python3
"""End-to-end benchmark of the core pipeline against the raw broker relay (issue 2, "Speed").

    .venv/bin/python benchmarks/pipeline_bench.py [--alerts 20000] [--rate 500]
        [--paced-seconds 10] [--silences 1000 --inhibit-rules 100] [--json out.json]
        [--profile py-spy|cprofile|pyinstrument]
        [--broker-conf 'set_tcp_nodelay true'] [--presence-devices 2000]

Starts its own Mosquitto and Redis on free 127.0.0.1 ports and the service as a separate
process (`python -m homealert_mqtt run --config <tmp yaml>`), then measures with one
publisher and one subscriber process (this same file, run with `--role`):

  raw relay      publisher -> mosquitto -> subscriber, QoS 1: burst msgs/s, paced latency
  service        publisher -> <base>/in -> service -> <base>/alert/<id> -> subscriber
                 burst alerts/s, paced latency, lost alerts, dedup exactness, service RSS

`--presence-devices N` also watches N Zigbee2MQTT devices (`presence.availability`), their
retained `online` published before the service starts; measuring begins once the service
has read them all (the retained `<base>/presence` lists N devices).

The exit code is non-zero only for correctness (lost alerts, inexact dedup, a phase that
did not finish); the speed goals are printed as PASS/FAIL. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

WARMUP = 300  # messages before each measured side (script load, imports, caches)
INFLIGHT = 1000  # the benchmark publisher's QoS 1 window (the broker's is 1000 too)
GOAL_RATIO = 0.30
GOAL_P99_MS = 5.0
MEMORY_FLAT_MIB = 16.0  # end RSS within this of the start (after warm-up)
NOISE_LIMIT = 0.25  # other work on the machine (CPUs) during a phase that makes a run noisy


# --------------------------------------------------------------------------- clients
def _client(name: str) -> mqtt.Client:
    # MQTT 3.1.1: paho's v5 path (properties and reason codes on every packet) costs ~40 %
    # of the raw relay's rate, and the baseline should be the best these clients do.
    return mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )


def _connect(
    client: mqtt.Client, host: str, port: int, *, threaded: bool = True, timeout: float = 10
) -> None:
    """Connect; the network loop runs in paho's thread, or (threaded=False) in the caller's
    calls to client.loop()."""
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect(host, port, keepalive=60)
    sock = client.socket()
    if isinstance(sock, socket.socket):  # small packets both ways: no Nagle delay
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    deadline = time.monotonic() + timeout
    if threaded:
        client.loop_start()
        connected.wait(timeout)
    while not connected.is_set() and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    if not connected.is_set():
        raise SystemExit(f"no CONNACK from {host}:{port} in {timeout} s")


def alert_payload(tag: str, seq: int, repeat: bool) -> bytes:
    """One alert; the same bytes go to the raw relay. `attributes` come back in the state."""
    kind = f"dedup-{tag}" if repeat else f"{tag}-{seq}"
    return json.dumps(
        {
            "source": "bench",
            "type": kind,  # unique per alert (a new fingerprint) unless repeated
            "severity": "high",
            "message": f"benchmark alert {seq}",
            "attributes": {"run": tag, "seq": seq, "t": time.monotonic_ns()},
        },
        separators=(",", ":"),
    ).encode()


def role_publisher(spec: dict[str, Any]) -> None:
    """Publish `count` alerts at QoS 1 (burst, or paced at `rate`/s); wait for every PUBACK.

    One thread: publish() writes to the socket at once, and client.loop() reads PUBACKs
    (which also sends what waited for the in-flight window) between publishes."""
    count, rate, deadline = spec["count"], spec["rate"], time.monotonic() + spec["timeout"]
    client = _client("bench-pub")
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)
    acked = 0
    last_ack_ns = 0

    def on_publish(*_a: Any) -> None:
        nonlocal acked, last_ack_ns
        acked += 1
        last_ack_ns = time.monotonic_ns()

    client.on_publish = on_publish
    _connect(client, spec["host"], spec["port"], threaded=False)
    interval_ns = int(1e9 / rate) if rate else 0
    topic, tag, repeat = spec["topic"], spec["tag"], spec["repeat"]
    start_ns = time.monotonic_ns()
    published = 0
    for seq in range(count):
        if interval_ns:
            due = start_ns + seq * interval_ns
            while (wait := due - time.monotonic_ns()) > 0:
                client.loop(timeout=wait / 1e9)
        elif seq % 32 == 0:
            client.loop(timeout=0)
        if time.monotonic() > deadline:
            break
        client.publish(topic, alert_payload(tag, seq, repeat), qos=1)
        published += 1
    last_pub_ns = time.monotonic_ns()
    while acked < published and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    client.disconnect()
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "first_pub_ns": start_ns,
                "last_pub_ns": last_pub_ns,
                "last_ack_ns": last_ack_ns,
                "published": published,
                "acked": acked,
            }
        )
    )


def role_subscriber(spec: dict[str, Any]) -> None:
    """Collect messages on `filter` whose attributes.run is `tag` until `expect` distinct
    seqs (or, with `max_count`, a state with count >= expect) arrived, or it went idle.

    Only live messages count (retained ones replayed at subscribe are dropped), or with
    `retained` only those. Parsing is incremental and happens off the receive callback."""
    received: list[tuple[int, bytes]] = []
    enough = threading.Event()
    want = spec["expect"]
    keep_retained = bool(spec.get("retained"))
    last_replayed = time.monotonic()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal last_replayed
        if bool(msg.retain) != keep_retained:
            last_replayed = time.monotonic()
            return
        received.append((time.monotonic_ns(), bytes(msg.payload)))
        if len(received) >= want:
            enough.set()

    subscribed = threading.Event()
    client = _client("bench-sub")
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    _connect(client, spec["host"], spec["port"])
    client.subscribe(spec["filter"], qos=1)
    if not subscribed.wait(10):
        raise SystemExit("no SUBACK")
    if not keep_retained:
        # Let the broker's replay of retained states drain first: thousands of them queued
        # ahead of the live ones would stall the first measured messages.
        until = time.monotonic() + 30
        while time.monotonic() - last_replayed < 0.3 and time.monotonic() < until:
            time.sleep(0.05)
    Path(spec["ready"]).touch()
    tally = Tally(spec)
    deadline = time.monotonic() + spec["timeout"]
    seen_len, last_change = 0, time.monotonic()
    while time.monotonic() < deadline:
        if enough.wait(0.05):
            enough.clear()
            tally.add(received)
            if tally.done():
                break
            want = len(received) + 1
        now = time.monotonic()
        if len(received) != seen_len:
            seen_len, last_change = len(received), now
        elif now - last_change > spec["idle"] and (seen_len or spec.get("idle_from_start")):
            break
    client.disconnect()
    client.loop_stop()
    tally.add(received)
    Path(spec["out"]).write_text(json.dumps(tally.result(len(received))))


class Tally:
    """What the subscriber saw, parsed once per message."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.tag: str = spec["tag"]
        self.expect: int = spec["expect"]
        self.by_count = bool(spec.get("max_count"))
        self.parsed = 0
        self.first: dict[int, tuple[int, int]] = {}  # seq -> (first arrival ns, send ns)
        self.max_count = self.last_count = 0
        self.alert_id: str | None = None

    def add(self, received: list[tuple[int, bytes]]) -> None:
        end = len(received)
        for recv_ns, payload in received[self.parsed : end]:
            try:
                data = json.loads(payload)
                attrs = data["attributes"]
            except (ValueError, KeyError, TypeError):
                continue  # an empty retained payload (a cleared alert), or not ours
            if not isinstance(attrs, dict) or attrs.get("run") != self.tag:
                continue
            self.first.setdefault(attrs["seq"], (recv_ns, attrs["t"]))
            if "count" in data:
                self.last_count = data["count"]
                self.max_count = max(self.max_count, self.last_count)
                self.alert_id = data.get("id")
        self.parsed = end

    def done(self) -> bool:
        if self.by_count:
            return self.max_count >= self.expect
        return len(self.first) >= self.expect

    def result(self, messages: int) -> dict[str, Any]:
        return {
            "done": self.done(),
            "messages": messages,
            "distinct": len(self.first),
            "seqs": sorted(self.first),
            "last_first_arrival_ns": max((r for r, _ in self.first.values()), default=0),
            "latencies_ns": [r - t for r, t in self.first.values()],
            "max_count": self.max_count,
            "last_count": self.last_count,
            "alert_id": self.alert_id,
        }


# --------------------------------------------------------------------------- orchestration
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="homealert-bench-"))
        self.run_id = uuid.uuid4().hex[:8]
        self.children: list[subprocess.Popen[bytes]] = []
        self.mqtt_port = 0
        self.redis_port = 0
        self.service: subprocess.Popen[bytes] | None = None
        self.rss: list[tuple[float, str, int]] = []  # (time, phase, kB)
        self.phase = "start"
        self._sampling = threading.Event()
        self.profile = args.profile or os.environ.get("BENCH_PROFILE", "")
        self._spy: subprocess.Popen[bytes] | None = None
        self.spy_files: list[tuple[str, Path]] = []
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.broker_proc: subprocess.Popen[bytes] | None = None
        self.cpu_marks: list[tuple[str, float, dict[str, float]]] = []  # (phase, time, {proc: s})
        self.redis_marks: list[tuple[str, dict[str, int]]] = []  # (phase, {command: calls})

    # -- servers
    def start_servers(self) -> None:
        from bench_servers import start_servers  # noqa: PLC0415 - beside this script

        servers = start_servers(self.tmp, self.args.broker_conf)
        self.children += [servers.redis, servers.broker]
        self.redis_proc, self.broker_proc = servers.redis, servers.broker
        self.redis_port, self.mqtt_port = servers.redis_port, servers.mqtt_port
        queued = [
            line.split()[1]
            for line in servers.broker_conf.splitlines()
            if line.startswith("max_queued_messages")
        ]
        if not queued or int(queued[-1]) < 4 * self.args.alerts:
            _fail(f"the broker's max_queued_messages ({queued}) is too small for the burst")

    def start_service(self, alerts_config: dict[str, Any] | None = None, fresh: str = "") -> None:
        """`fresh`: a base topic and key prefix of their own (no state of earlier phases)."""
        self.base = f"bench{self.run_id}{fresh}"
        self.prefix = f"bench{self.run_id}{fresh}"
        cfg = self.tmp / "homealert.yaml"
        channels = {name: {"enabled": False} for name in ("email", "slack", "sms", "phone", "mqtt")}
        cfg.write_text(
            json.dumps(  # JSON is YAML
                {
                    "mqtt": {
                        "url": f"mqtt://127.0.0.1:{self.mqtt_port}",
                        "base_topic": self.base,
                        "client_id": f"bench-service-{self.run_id}",
                    },
                    "redis": {
                        "url": f"redis://127.0.0.1:{self.redis_port}/0",
                        "key_prefix": self.prefix,
                    },
                    "channels": channels,
                    "homeassistant": {"discovery": False},
                    "http": {"enabled": False},
                    "logging": {"level": "warning"},
                    **self._presence_config(),
                    **({"alerts": alerts_config} if alerts_config else {}),
                },
                indent=1,
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEALERT_")}
        profile = self.profile
        wrapper: list[str] = []
        if profile == "cprofile":
            wrapper = ["-m", "cProfile", "-o", str(self.tmp / "service.prof")]
        elif profile == "pyinstrument":
            wrapper = ["-m", "pyinstrument", "-r", "text", "-o", str(self.tmp / "service.txt")]
        args = [sys.executable, *wrapper, "-m", "homealert_mqtt", "run", "--config", str(cfg)]
        log = self.tmp / "service.log"
        self.service = subprocess.Popen(
            args,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(self.tmp),
            preexec_fn=_pdeathsig,  # noqa: PLW1509
        )
        self.children.append(self.service)
        self._wait_online(30)
        if self.args.presence_devices:
            self._wait_presence(self.args.presence_devices, 120)
        self._sampling.set()
        threading.Thread(target=self._sample_rss, daemon=True).start()

    # -- presence (--presence-devices)
    def _presence_config(self) -> dict[str, Any]:
        count = self.args.presence_devices
        if not count:
            return {}
        base = f"bench{self.run_id}z2m"
        client = _client("bench-devices")
        _connect(client, "127.0.0.1", self.mqtt_port)
        infos = [
            client.publish(f"{base}/dev{i:05d}/availability", b'{"state":"online"}', 1, True)
            for i in range(count)
        ]
        for info in infos:
            info.wait_for_publish(30)
        client.disconnect()
        client.loop_stop()
        return {"presence": {"availability": [{"preset": "zigbee2mqtt", "base_topic": base}]}}

    def _wait_presence(self, count: int, timeout: float) -> None:
        """Until the service has recorded every device (its retained <base>/presence)."""
        done = threading.Event()
        client = _client("bench-presence")

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.payload and len(json.loads(msg.payload)) >= count:
                done.set()

        client.on_message = on_message
        _connect(client, "127.0.0.1", self.mqtt_port)
        client.subscribe(f"{self.base}/presence", qos=1)
        if not done.wait(timeout):
            _fail(f"the service did not record {count} devices in {timeout} s")
        client.disconnect()
        client.loop_stop()

    def create_silences(self, count: int) -> None:
        """`count` silences over MQTT, none matching the benchmark's alerts (as a house's
        maintenance windows and snoozes would not match a flood elsewhere): nine in ten
        on a source (indexed), one in ten on a type glob (tried for every alert)."""
        from redis import Redis  # noqa: PLC0415

        from homealert_mqtt.store.keys import Keys  # noqa: PLC0415

        started = time.monotonic()
        client = _client("bench-silences")
        _connect(client, "127.0.0.1", self.mqtt_port)
        for i in range(count):
            matchers = {"source": f"dev-{i}"} if i % 10 else {"type": f"probe-{i}-*"}
            body = json.dumps({"matchers": matchers, "duration": 86400, "comment": "bench"})
            client.publish(f"{self.base}/silence/bench-{i}/set", body, qos=1).wait_for_publish(10)
        client.loop_stop()
        client.disconnect()
        keys = Keys.for_prefix(self.prefix)
        deadline = time.monotonic() + 300
        with Redis(host="127.0.0.1", port=self.redis_port) as redis:
            while int(redis.zcard(keys.silences)) < count:
                if time.monotonic() > deadline:
                    _fail(f"only {redis.zcard(keys.silences)} of {count} silences stored")
                time.sleep(0.1)
        print(f"{count} silences stored in {time.monotonic() - started:.1f} s", flush=True)

    def _wait_online(self, timeout: float) -> None:
        online = threading.Event()
        client = _client("bench-status")

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.payload == b"online":
                online.set()

        client.on_message = on_message
        _connect(client, "127.0.0.1", self.mqtt_port)
        client.subscribe(f"{self.base}/status", qos=1)
        deadline = time.monotonic() + timeout
        while not online.wait(0.1):
            if self.service is not None and self.service.poll() is not None:
                _fail(f"service exited ({self.service.returncode}); see {self.tmp}/service.log")
            if time.monotonic() > deadline:
                _fail(f"service not online after {timeout} s; see {self.tmp}/service.log")
        client.disconnect()
        client.loop_stop()

    def stop_service(self) -> None:
        self._sampling.clear()
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGTERM)
            try:
                self.service.wait(30)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(5)

    def stop_all(self) -> None:
        from bench_servers import stop_children  # noqa: PLC0415 - beside this script

        self._sampling.clear()
        stop_children(self.children, grace=10)

    # -- memory
    def _rss_kb(self) -> int:
        assert self.service is not None
        try:
            for line in Path(f"/proc/{self.service.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _sample_rss(self) -> None:
        while self._sampling.is_set():
            kb = self._rss_kb()
            if kb:
                self.rss.append((time.monotonic(), self.phase, kb))
            time.sleep(0.1)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by the service, Redis and Mosquitto; by
        this benchmark as a whole ("bench": those, itself and its finished roles); and by
        the whole machine, to tell how busy other work kept it."""
        from bench_servers import process_cpu_seconds  # noqa: PLC0415 - beside this script

        tick = os.sysconf("SC_CLK_TCK")
        used = {}
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            # user nice system idle iowait irq softirq steal: everything but idle and iowait
            used["machine"] = (
                sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4)) / tick
            )
        except (OSError, ValueError):
            pass
        own = os.times()
        used["bench"] = own.user + own.system + own.children_user + own.children_system
        for name, proc in (
            ("service", self.service),
            ("redis", self.redis_proc),
            ("mosquitto", self.broker_proc),
        ):
            seconds = None if proc is None else process_cpu_seconds(proc.pid)
            if seconds is not None:
                used[name] = seconds
        used["bench"] += sum(used.get(n, 0.0) for n in ("service", "redis", "mosquitto"))
        return used

    def redis_calls(self) -> dict[str, int]:
        """Calls per Redis command so far (INFO commandstats), Lua scripts by EVALSHA."""
        from redis import Redis  # noqa: PLC0415

        try:
            with Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=5) as redis:
                stats = redis.info("commandstats")
        except OSError:
            return {}
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def mark(self, phase: str) -> int:
        """Start a phase; returns the RSS now (kB)."""
        self.redis_marks.append((phase, self.redis_calls()))
        self.cpu_marks.append((phase, time.monotonic(), self.cpu_seconds()))
        self.phase = phase
        if self.profile == "py-spy":
            self._spy_phase(phase)
        kb = self._rss_kb() if self.service is not None else 0
        if kb:
            self.rss.append((time.monotonic(), phase, kb))
        return kb

    def _spy_phase(self, phase: str) -> None:
        """py-spy records each measured service phase into its own collapsed-stack file."""
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self._spy.wait(30)
            except subprocess.TimeoutExpired:
                self._spy.kill()
            self._spy = None
        if phase not in ("burst", "paced", "dedup") or self.service is None:
            return
        spy = Path(sys.executable).with_name("py-spy")
        out = self.tmp / f"pyspy-{phase}.txt"
        self._spy = subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(self.service.pid),
                "--format",
                "raw",
                "--rate",
                "250",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=(self.tmp / f"pyspy-{phase}.log").open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_pdeathsig,  # noqa: PLW1509
        )
        self.children.append(self._spy)
        self.spy_files.append((phase, out))

    # -- one measured exchange: subscriber ready, then publisher, then both results
    def exchange(
        self,
        name: str,
        *,
        publish_topic: str,
        sub_filter: str,
        count: int,
        rate: float = 0,
        repeat: bool = False,
        timeout: float = 90,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        tag = f"{name}{self.run_id}"
        common: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.mqtt_port,
            "tag": tag,
            "timeout": timeout,
        }
        ready = self.tmp / f"{name}.ready"
        sub_spec: dict[str, Any] = {
            **common,
            "filter": sub_filter,
            "expect": count,
            "max_count": repeat,
            "idle": 5.0,
            "ready": str(ready),
            "out": str(self.tmp / f"{name}.sub.json"),
        }
        pub_spec: dict[str, Any] = {
            **common,
            "topic": publish_topic,
            "count": count,
            "rate": rate,
            "repeat": repeat,
            "out": str(self.tmp / f"{name}.pub.json"),
        }
        sub = self._role("subscriber", sub_spec, name)
        deadline = time.monotonic() + 20
        while not ready.exists():
            if sub.poll() is not None or time.monotonic() > deadline:
                _fail(f"{name}: subscriber did not start; see {self.tmp}/{name}.subscriber.log")
            time.sleep(0.02)
        pub = self._role("publisher", pub_spec, name)
        for proc in (pub, sub):
            try:
                proc.wait(timeout + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        try:
            return (
                json.loads(Path(pub_spec["out"]).read_text()),
                json.loads(Path(sub_spec["out"]).read_text()),
            )
        except OSError:
            _fail(f"{name}: a role process failed; see the logs in {self.tmp}")
            raise

    def _role(self, role: str, spec: dict[str, Any], name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.{role}.log").open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--role",
                role,
                "--spec",
                json.dumps(spec),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_pdeathsig,  # noqa: PLW1509
        )
        self.children.append(proc)
        return proc

    def retained_check(self, name: str, tag: str, count: int) -> dict[str, Any]:
        """A fresh subscriber to <base>/alert/+: which of the run's alerts have a retained
        state."""
        ready = self.tmp / f"{name}.ready"
        spec: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.mqtt_port,
            "tag": tag,
            "timeout": 60,
            "filter": f"{self.base}/alert/+",
            "expect": count,
            "max_count": False,
            "idle": 3.0,
            "idle_from_start": True,
            "retained": True,
            "ready": str(ready),
            "out": str(self.tmp / f"{name}.sub.json"),
        }
        proc = self._role("subscriber", spec, name)
        try:
            proc.wait(100)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        result: dict[str, Any] = json.loads(Path(spec["out"]).read_text())
        return result

    def redis_alerts(self) -> dict[str, dict[str, Any]]:
        """Every stored alert's attributes and count, read from Redis: {id: {...}}."""
        from redis import Redis  # noqa: PLC0415

        from homealert_mqtt.store.keys import Keys  # noqa: PLC0415

        keys = Keys.for_prefix(self.prefix)
        with Redis(host="127.0.0.1", port=self.redis_port) as redis:
            ids = [i.decode() for i in redis.zrange(keys.retention, 0, -1)]
            pipe = redis.pipeline(transaction=False)
            for alert_id in ids:
                pipe.hmget(keys.alert(alert_id), "attributes", "count")
            rows = pipe.execute()
        found = {}
        for alert_id, (attrs, count) in zip(ids, rows, strict=True):
            if attrs is not None:
                found[alert_id] = {"attributes": json.loads(attrs), "count": int(count or 0)}
        return found


def _pdeathsig() -> None:
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _fail(message: str) -> bool:
    raise SystemExit(f"benchmark failed: {message}")


# --------------------------------------------------------------------------- numbers
def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))  # nearest rank
    return ordered[min(len(ordered), max(1, rank)) - 1]


def cpu_by_phase(
    marks: list[tuple[str, float, dict[str, float]]], counts: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Per measured phase: each process's CPU share of the wall time and CPU ms per alert."""
    out: dict[str, dict[str, float]] = {}
    for (phase, t0, c0), (_, t1, c1) in itertools.pairwise(marks):
        if phase not in counts:
            continue
        wall = t1 - t0
        row: dict[str, float] = {"wall_s": wall}
        for name in c0.keys() & c1.keys():
            used = c1[name] - c0[name]
            row[f"{name}_busy"] = used / wall if wall else 0.0
            row[f"{name}_ms_per_alert"] = 1000 * used / counts[phase]
        if "machine_busy" in row and "bench_busy" in row:
            # Other work on the machine meanwhile (roles still running are counted as other,
            # so this errs high by at most the publisher's and subscriber's share).
            row["other_busy"] = max(0.0, row["machine_busy"] - row["bench_busy"])
        out[phase] = row
    return out


def redis_calls_by_phase(
    marks: list[tuple[str, dict[str, int]]], counts: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Per measured phase: Redis calls per alert, by command."""
    out: dict[str, dict[str, float]] = {}
    for (phase, before), (_, after) in itertools.pairwise(marks):
        if phase in counts:
            out[phase] = {
                cmd: round((calls - before.get(cmd, 0)) / counts[phase], 2)
                for cmd, calls in sorted(after.items())
                if calls > before.get(cmd, 0)
            }
    return out


def burst_rate(pub: dict[str, Any], sub: dict[str, Any]) -> float:
    span = (sub["last_first_arrival_ns"] - pub["first_pub_ns"]) / 1e9
    return sub["distinct"] / span if span > 0 else 0.0


def latency_ms(sub: dict[str, Any]) -> dict[str, float]:
    lat = [v / 1e6 for v in sub["latencies_ns"]]
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat, default=float("nan"))}


def run(args: argparse.Namespace) -> int:
    bench = Bench(args)
    from bench_servers import watchdog as start_watchdog  # noqa: PLC0415 - beside this script

    watchdog = start_watchdog(args.max_seconds, bench.tmp, bench.stop_all)
    started = time.monotonic()
    n, rate = args.alerts, args.rate
    paced_n = int(rate * args.paced_seconds)
    results: dict[str, Any] = {
        "alerts": n,
        "rate": rate,
        "paced_seconds": args.paced_seconds,
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    try:
        bench.start_servers()
        raw_topic = f"benchraw{bench.run_id}/relay"
        print(
            f"servers up: mosquitto 127.0.0.1:{bench.mqtt_port}, "
            f"redis 127.0.0.1:{bench.redis_port}; work dir {bench.tmp}",
            flush=True,
        )

        # 1. the raw broker relay: the ceiling, with the same client code
        bench.exchange("rawwarm", publish_topic=raw_topic, sub_filter=raw_topic, count=WARMUP)
        bench.mark("raw-burst")
        pub, sub = bench.exchange(
            "rawburst", publish_topic=raw_topic, sub_filter=raw_topic, count=n
        )
        raw_rate = burst_rate(pub, sub)
        results["raw_burst"] = {
            "msgs_per_s": raw_rate,
            "received": sub["distinct"],
            "sent": pub["acked"],
        }
        print(
            f"raw relay burst: {raw_rate:,.0f} msgs/s ({sub['distinct']:,}/{n:,} received)",
            flush=True,
        )
        bench.mark("raw-paced")
        pub, sub = bench.exchange(
            "rawpaced", publish_topic=raw_topic, sub_filter=raw_topic, count=paced_n, rate=rate
        )
        raw_lat = latency_ms(sub)
        results["raw_paced"] = {**raw_lat, "received": sub["distinct"], "sent": pub["acked"]}
        print(
            f"raw relay paced {rate:g}/s: p50 {raw_lat['p50']:.2f} ms, p99 {raw_lat['p99']:.2f} ms",
            flush=True,
        )

        # 2. the service
        bench.mark("service-start")
        bench.start_service()
        base = bench.base
        inp, states = f"{base}/in", f"{base}/alert/+"
        rss_ready = bench.mark("warm-up")
        bench.exchange("svcwarm", publish_topic=inp, sub_filter=states, count=WARMUP)
        time.sleep(1)
        rss_start = bench.mark("burst")
        pub, sub = bench.exchange(
            "burst", publish_topic=inp, sub_filter=states, count=n, timeout=120
        )
        svc_rate = burst_rate(pub, sub)
        burst_live = set(sub["seqs"])
        burst_acked = pub["acked"]
        results["service_burst"] = {
            "alerts_per_s": svc_rate,
            "ratio": svc_rate / raw_rate if raw_rate else 0.0,
            "states_received": sub["distinct"],
            "state_messages": sub["messages"],
            "published_acked": burst_acked,
        }
        print(
            f"service burst: {svc_rate:,.0f} alerts/s ({sub['distinct']:,}/{n:,} states)",
            flush=True,
        )

        bench.mark("lost-check")
        retained = bench.retained_check("retained", f"burst{bench.run_id}", n)
        burst_tag = f"burst{bench.run_id}"
        stored = bench.redis_alerts()
        in_redis = {
            a["attributes"]["seq"]
            for a in stored.values()
            if isinstance(a["attributes"], dict) and a["attributes"].get("run") == burst_tag
        }
        published = set(range(n))
        lost_live = len(published - burst_live)
        lost_retained = len(published - set(retained["seqs"]))
        lost_redis = len(published - in_redis)
        lost = len(published - (burst_live & set(retained["seqs"]) & in_redis))
        results["lost"] = {
            "published": n,
            "acked_by_broker": burst_acked,
            "missing_live_state": lost_live,
            "missing_retained_state": lost_retained,
            "missing_in_redis": lost_redis,
            "lost": lost,
        }
        print(
            f"lost: {lost} (state {lost_live}, retained {lost_retained}, redis {lost_redis})",
            flush=True,
        )

        bench.mark("paced")
        pub, sub = bench.exchange(
            "paced", publish_topic=inp, sub_filter=states, count=paced_n, rate=rate
        )
        svc_lat = latency_ms(sub)
        results["service_paced"] = {**svc_lat, "received": sub["distinct"], "sent": pub["acked"]}
        print(
            f"service paced {rate:g}/s: p50 {svc_lat['p50']:.2f} ms, p99 {svc_lat['p99']:.2f} ms",
            flush=True,
        )

        bench.mark("dedup")
        repeats = args.repeats
        pub, sub = bench.exchange(
            "dedup", publish_topic=inp, sub_filter=states, count=repeats, repeat=True, timeout=60
        )
        dedup_tag = f"dedup{bench.run_id}"
        dedup_alerts = [
            a
            for a in bench.redis_alerts().values()
            if isinstance(a["attributes"], dict) and a["attributes"].get("run") == dedup_tag
        ]
        redis_count = dedup_alerts[0]["count"] if len(dedup_alerts) == 1 else -1
        dedup_exact = (
            len(dedup_alerts) == 1 and redis_count == repeats and sub["last_count"] == repeats
        )
        results["dedup"] = {
            "repeats": repeats,
            "alerts_opened": len(dedup_alerts),
            "count_in_redis": redis_count,
            "count_in_last_state": sub["last_count"],
            "exact": dedup_exact,
        }

        bench.mark("idle")
        time.sleep(2)
        rss_end = bench.mark("end")
        bench.stop_service()
        if args.silences or args.inhibit_rules:
            results["noise"] = noise_phase(bench, args, raw_rate)
        rss_peak = max((kb for _, _, kb in bench.rss), default=0)
        by_phase: dict[str, int] = {}
        for _, phase, kb in bench.rss:
            by_phase[phase] = max(by_phase.get(phase, 0), kb)
        results["memory_kb"] = {
            "ready": rss_ready,
            "start": rss_start,
            "peak": rss_peak,
            "end": rss_end,
            "peak_by_phase": by_phase,
        }
        results["cpu"] = cpu_by_phase(
            bench.cpu_marks,
            {
                "raw-burst": n,
                "raw-paced": paced_n,
                "burst": n,
                "paced": paced_n,
                "dedup": repeats,
                "plainburst": n,  # --silences / --inhibit-rules
                "noiseburst": n,
            },
        )
        results["redis_calls_per_alert"] = redis_calls_by_phase(
            bench.redis_marks,
            {"burst": n, "paced": paced_n, "dedup": repeats, "plainburst": n, "noiseburst": n},
        )
        results["seconds"] = time.monotonic() - started
        code = report(results, bench)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        if bench.profile:
            _profile_report(bench, bench.profile)
        return code
    finally:
        bench.stop_all()
        watchdog.cancel()


def noise_phase(bench: Bench, args: argparse.Namespace, raw_rate: float) -> dict[str, Any]:
    """The burst four times more, each on a service of its own that starts empty (a base
    topic and key prefix of its own, so that none pays for another's stored alerts): as
    it is, and with `--inhibit-rules` rules in its config and `--silences` active
    silences, none of them matching the burst (a house's maintenance windows, snoozes
    and dependencies would not match a flood elsewhere); averaged per kind."""

    def burst(name: str) -> float:
        inp, states = f"{bench.base}/in", f"{bench.base}/alert/+"
        bench.exchange(f"{name}warm", publish_topic=inp, sub_filter=states, count=WARMUP)
        time.sleep(1)
        bench.mark(name)
        pub, sub = bench.exchange(
            name, publish_topic=inp, sub_filter=states, count=args.alerts, timeout=120
        )
        bench.mark(f"{name}-end")
        return burst_rate(pub, sub)

    # A B B A: the machine's other work drifts, and whichever runs later pays for it.
    rates: dict[str, list[float]] = {"plain": [], "noise": []}
    for index, kind in enumerate(("plain", "noise", "noise", "plain")):
        if kind == "plain":
            bench.start_service(fresh=f"plain{index}")
        else:
            rules = {"inhibit_rules": inhibit_rules(args.inhibit_rules)}
            bench.start_service(rules, fresh=f"noise{index}")
            bench.create_silences(args.silences)
            time.sleep(2)  # the service marks the open alerts they match (none) once
        rates[kind].append(burst(f"{kind}burst"))
        bench.stop_service()
    plain = sum(rates["plain"]) / 2
    noisy = sum(rates["noise"]) / 2
    result = {
        "silences": args.silences,
        "inhibit_rules": args.inhibit_rules,
        "alerts_per_s": noisy,
        "alerts_per_s_without": plain,
        "ratio": noisy / raw_rate if raw_rate else 0.0,
        "ratio_without": plain / raw_rate if raw_rate else 0.0,
        "slowdown": 1 - noisy / plain if plain else 0.0,
        "runs": rates,
    }
    print(
        f"service burst after a restart: {plain:,.0f} alerts/s = {result['ratio_without']:.2f} "
        f"of raw relay; with {args.silences} silences and {args.inhibit_rules} inhibit rules "
        f"{noisy:,.0f} alerts/s = {result['ratio']:.2f} ({result['slowdown']:+.1%} slower; "
        f"runs {', '.join(f'{k} {v:,.0f}' for k in rates for v in rates[k])})",
        flush=True,
    )
    return result


def inhibit_rules(count: int) -> list[dict[str, Any]]:
    """Rules of the usual shapes: a device offline holds back the rest of that device
    (nine in ten, a target on a source), a power cut in a room what is in that room."""
    rules: list[dict[str, Any]] = []
    for i in range(count):
        if i % 10:
            rules.append(
                {
                    "source_matchers": {"type": "device_offline", "source": f"dev-{i}"},
                    "target_matchers": {"source": f"dev-{i}"},
                }
            )
        else:
            rules.append(
                {
                    "source_matchers": {"type": "power_out", "attributes.room": f"room-{i}"},
                    "target_matchers": {"type": f"probe-{i}-*"},
                    "equal": ["attributes.room"],
                }
            )
    return rules


def report(r: dict[str, Any], bench: Bench) -> int:
    raw, svc = r["raw_burst"], r["service_burst"]
    rp, sp = r["raw_paced"], r["service_paced"]
    lost, dedup, mem = r["lost"], r["dedup"], r["memory_kb"]
    mib = {k: v / 1024 for k, v in mem.items() if isinstance(v, int)}
    rate = r["rate"]
    ratio_ok = svc["ratio"] >= GOAL_RATIO
    p99_ok = sp["p99"] <= GOAL_P99_MS
    growth = mib["end"] - mib["start"]
    mem_ok = growth <= MEMORY_FLAT_MIB
    rows = [
        (
            "raw relay, burst (QoS 1)",
            f"{raw['msgs_per_s']:,.0f} msgs/s",
            f"{raw['received']:,}/{r['alerts']:,} received",
        ),
        (
            f"raw relay, paced {rate:g}/s",
            f"p50 {rp['p50']:.2f} ms",
            f"p99 {rp['p99']:.2f} ms, max {rp['max']:.1f} ms",
        ),
        (
            "service, burst",
            f"{svc['alerts_per_s']:,.0f} alerts/s",
            f"{svc['states_received']:,}/{r['alerts']:,} states",
        ),
        (
            f"service, paced {rate:g}/s",
            f"p50 {sp['p50']:.2f} ms",
            f"p99 {sp['p99']:.2f} ms, max {sp['max']:.1f} ms",
        ),
        (
            "lost after the burst",
            f"{lost['lost']}",
            f"no live state {lost['missing_live_state']}, no retained "
            f"{lost['missing_retained_state']}, not in Redis {lost['missing_in_redis']}",
        ),
        (
            f"dedup, {dedup['repeats']:,} repeats",
            f"count {dedup['count_in_redis']}",
            f"{dedup['alerts_opened']} alert(s), last state count {dedup['count_in_last_state']}",
        ),
        (
            "service RSS (MiB)",
            f"{mib['start']:.1f} / {mib['peak']:.1f} / {mib['end']:.1f}",
            f"start / peak / end (at ready {mib['ready']:.1f})",
        ),
    ]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    line = "-+-".join("-" * w for w in width)
    print()
    print(
        " | ".join(h.ljust(w) for h, w in zip(("measure", "result", "detail"), width, strict=True))
    )
    print(line)
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, width, strict=True)))
    print()
    print(
        f"service burst: {svc['alerts_per_s']:,.0f} alerts/s = {svc['ratio']:.2f} of raw relay "
        f"{raw['msgs_per_s']:,.0f} msgs/s"
    )
    print(
        f"service paced: p99 {sp['p99']:.2f} ms vs raw relay p99 {rp['p99']:.2f} ms "
        f"(+{sp['p99'] - rp['p99']:.2f} ms) at {rate:g}/s"
    )
    for phase, calls in r.get("redis_calls_per_alert", {}).items():
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:5]
        print(
            f"Redis per alert during {phase}: {sum(calls.values()):.1f} commands (scripts' "
            f"included), {calls.get('evalsha', 0):g} EVALSHA; most: "
            + ", ".join(f"{c} {v:g}" for c, v in top)
        )
    noisy = False
    for phase, row in r.get("cpu", {}).items():
        print(
            f"CPU during {phase} ({row['wall_s']:.1f} s): "
            + ", ".join(
                f"{name} {row[name + '_busy']:.0%} = {row[name + '_ms_per_alert']:.3f} ms/alert"
                for name in ("service", "redis", "mosquitto")
                if name + "_busy" in row
            )
            + (
                f"; other work on the machine {row['other_busy']:.0%}"
                if "other_busy" in row
                else ""
            )
        )
        noisy = noisy or row.get("other_busy", 0.0) > NOISE_LIMIT
    print(
        "RSS per phase peak (MiB): "
        + ", ".join(f"{k} {v / 1024:.1f}" for k, v in mem["peak_by_phase"].items())
    )
    print()
    verdicts = [
        (f"throughput >= {GOAL_RATIO:.2f} of raw relay", ratio_ok, f"{svc['ratio']:.2f}"),
        ("0 lost", lost["lost"] == 0, str(lost["lost"])),
        (f"p99 <= {GOAL_P99_MS:g} ms at {rate:g}/s", p99_ok, f"{sp['p99']:.2f} ms"),
        ("dedup exact", dedup["exact"], f"{dedup['count_in_redis']} == {dedup['repeats']}"),
        (f"memory flat (end - start <= {MEMORY_FLAT_MIB:g} MiB)", mem_ok, f"{growth:+.1f} MiB"),
    ]
    if "noise" in r:
        noise = r["noise"]
        verdicts.append(
            (
                f"{noise['silences']} silences, {noise['inhibit_rules']} inhibit rules slow "
                "the burst by <= 10%",
                noise["slowdown"] <= 0.10,
                f"{noise['ratio']:.2f} vs {noise['ratio_without']:.2f} of raw relay",
            )
        )
    for goal, ok, value in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {goal}: {value}")
    if noisy:
        print(
            f"\nNOISY: other work used more than {NOISE_LIMIT:.0%} of a CPU during a measured "
            f"phase (load average at start {r['loadavg']}): the speed numbers are not reliable."
        )
    print(f"\n({r['seconds']:.0f} s; logs in {bench.tmp})")
    return 0 if lost["lost"] == 0 and dedup["exact"] else 1


def _profile_report(bench: Bench, profile: str) -> None:
    if profile == "cprofile":
        import pstats  # noqa: PLC0415

        path = bench.tmp / "service.prof"
        if path.exists():
            print(f"\ncProfile of the service (whole run): {path}")
            stats = pstats.Stats(str(path))
            stats.sort_stats("tottime").print_stats(25)
    elif profile == "pyinstrument":
        print(f"\npyinstrument report of the service: {bench.tmp / 'service.txt'}")
    elif profile == "py-spy":
        for phase, path in bench.spy_files:
            if path.exists():
                print(f"\npy-spy, service during '{phase}' ({path}):")
                print(collapsed_summary(path))


def collapsed_summary(path: Path, top: int = 18) -> str:
    """Self and inclusive shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split("/")[-1] for f in stack.split(";")
        ]
        frames = [f.split(":")[0] + ")" if f.endswith(")") else f for f in frames]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; self time:"]
    lines += [
        f"    {n / total:6.1%}  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]
    ]
    lines.append("  inclusive time:")
    lines += [
        f"    {n / total:6.1%}  {f}" for f, n in sorted(incl.items(), key=lambda x: -x[1])[:top]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--role"]:
        role = argparse.ArgumentParser()
        role.add_argument("--role", choices=("publisher", "subscriber"))
        role.add_argument("--spec", required=True)
        ns = role.parse_args(argv)
        spec = json.loads(ns.spec)
        (role_publisher if ns.role == "publisher" else role_subscriber)(spec)
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--alerts", type=int, default=20_000, help="alerts in the burst (default 20000)"
    )
    parser.add_argument(
        "--rate", type=float, default=500, help="paced rate, per second (default 500)"
    )
    parser.add_argument(
        "--paced-seconds", type=float, default=10, help="paced duration (default 10)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1000, help="repeats for the dedup check (default 1000)"
    )
    parser.add_argument(
        "--silences",
        type=int,
        default=0,
        metavar="N",
        help="then the burst without and with N active silences (e.g. 1000)",
    )
    parser.add_argument(
        "--inhibit-rules",
        type=int,
        default=0,
        metavar="N",
        help="... and N inhibit rules in the service's config (e.g. 100)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument", "py-spy"),
        help="run the service under a profiler (or BENCH_PROFILE=...); slows it down",
    )
    parser.add_argument(
        "--broker-conf",
        action="append",
        default=[],
        metavar="LINE",
        help="an extra mosquitto.conf line (e.g. 'set_tcp_nodelay true'); repeatable",
    )
    parser.add_argument(
        "--presence-devices",
        type=int,
        default=0,
        metavar="N",
        help="also watch N devices' retained availability topics (default 0: none)",
    )
    parser.add_argument("--max-seconds", type=float, default=600, help="hard stop (default 600)")
    args = parser.parse_args(argv)
    if args.alerts < 1 or args.rate <= 0 or args.paced_seconds <= 0 or args.repeats < 1:
        parser.error("--alerts, --rate, --paced-seconds and --repeats must be positive")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
