#!/usr/bin/env python3
"""Escalation timer benchmark (issue 3, "Speed"): 10,000 pending escalations due within
one minute, and how late each one reaches the (stand-in) SMS provider.

    .venv/bin/python benchmarks/escalation_bench.py [--alerts 10000] [--window 60]
        [--delay SECONDS] [--grace 15] [--json out.json] [--profile]

Starts its own Mosquitto and Redis on free 127.0.0.1 ports, a notification sink (an
aiohttp server standing in for Twilio's REST API, in a process of its own: it answers
201 with a message `sid` and records each request's arrival time, `To` and `Body`), and
the service as a separate process (`python -m homealert_mqtt run --config <tmp yaml>`)
with only the sms channel on, grouping off (each alert is its own batch, so what is
measured is the per-alert timer) and a P1 policy of two levels:

    level 0 (delay 0)   sms -> sink0 (+15550000000)
    level 1 (delay D)   sms -> sink1 (+15550000001)

The design: N critical alerts are published to <base>/in paced evenly over `--window`
seconds (10,000 over 60 s = 167/s) and D = window + 5 s, so after the ingest is over the
N level-1 timers fall due spread over one window while the service is otherwise idle.

Measured for level 1: lateness = sink arrival (wall clock) - due, where due = the alert's
`opened_at` (its first_seen, the service's clock, read from Redis after the run) + D;
p50/p99/max; notifications/s at the sink over the window; missed (an alert with no
level-1 SMS after the last due time + grace) and doubled (more than one). Baseline in the
same run, before the service starts: the sink's raw capacity, 10,000 Twilio-shaped form
POSTs from one aiohttp client with 64 in flight.

Goal: p99 lateness < 250 ms with nothing missed or doubled. The exit code is non-zero
only for missed or doubled notifications (or a run that could not be carried out); the
lateness goal is printed as PASS/FAIL. `--profile` samples the service with py-spy
during the level-1 window and prints where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"
ACCOUNT = "ACbench0000000000000000000000000000"
BASELINE_ACCOUNT = "ACbaseline000000000000000000000000"
SINK0, SINK1 = "+15550000000", "+15550000001"
FROM = "+15559999999"
GOAL_P99_MS = 250.0
BASELINE_REQUESTS = 10_000
BASELINE_CONCURRENCY = 64
ID_IN_BODY = re.compile(r"\(([a-z0-9][a-z0-9_-]{0,95})\)")


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ============================================================================ the sink
def role_sink(max_seconds: float) -> None:
    """Twilio's Messages endpoint on a free loopback port; prints the port, then serves
    until SIGTERM (or max_seconds, so it never outlives a broken run)."""
    from aiohttp import web  # noqa: PLC0415

    records: list[tuple[int, str, str, str]] = []  # (arrival ns, account, To, Body)
    baseline = [0]

    async def messages(request: web.Request) -> web.Response:
        arrived = time.time_ns()
        form = await request.post()
        account = request.match_info["account"]
        if account == BASELINE_ACCOUNT:
            baseline[0] += 1
        else:
            records.append((arrived, account, str(form.get("To", "")), str(form.get("Body", ""))))
        sid = "SM" + uuid.uuid4().hex
        return web.json_response(
            {
                "sid": sid,
                "account_sid": account,
                "to": form.get("To"),
                "from": form.get("From"),
                "body": form.get("Body"),
                "status": "queued",
            },
            status=201,
        )

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"records": len(records), "baseline": baseline[0]})

    async def dump(_request: web.Request) -> web.Response:
        return web.json_response(records)

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", messages)
        app.router.add_get("/_stats", stats)
        app.router.add_get("/_records", dump)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, backlog=1024)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max_seconds)
        await runner.cleanup()

    asyncio.run(serve())


async def sink_capacity(url: str, requests: int, concurrency: int) -> dict[str, float]:
    """Form POSTs shaped like the service's (To, From, Body, Basic auth) as fast as one
    aiohttp client with `concurrency` in flight gets them answered."""
    import aiohttp  # noqa: PLC0415

    auth = "Basic " + base64.b64encode(f"{BASELINE_ACCOUNT}:token".encode()).decode()
    target = f"{url}/2010-04-01/Accounts/{BASELINE_ACCOUNT}/Messages.json"
    body = "[P1] t00000 on bench (bench-t00000-0123abcd): benchmark alert"
    connector = aiohttp.TCPConnector(limit=concurrency)
    errors = 0

    async with aiohttp.ClientSession(connector=connector) as session:

        async def run(count: int) -> None:
            nonlocal errors
            queue = iter(range(count))

            async def worker() -> None:
                nonlocal errors
                for _ in queue:  # shared iterator: `count` requests in all
                    data = {"To": SINK1, "From": FROM, "Body": body}
                    async with session.post(
                        target, data=data, headers={"Authorization": auth}
                    ) as resp:
                        await resp.read()
                        if resp.status != 201:
                            errors += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await run(500)  # warm-up: connections, caches
        started = time.perf_counter()
        await run(requests)
        elapsed = time.perf_counter() - started
    return {"requests": requests, "seconds": elapsed, "rps": requests / elapsed, "errors": errors}


# ============================================================================ the run
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="homealert-escbench-"))
        self.run_id = uuid.uuid4().hex[:8]
        self.base = f"escbench{self.run_id}"
        self.prefix = f"escbench{self.run_id}"
        self.children: list[subprocess.Popen[bytes]] = []
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.broker_proc: subprocess.Popen[bytes] | None = None
        self.service: subprocess.Popen[bytes] | None = None
        self.sink_proc: subprocess.Popen[bytes] | None = None
        self.redis_port = self.mqtt_port = self.sink_port = 0
        self.service_code = ""

    # -- processes
    def start_servers(self) -> None:
        from bench_servers import start_servers  # noqa: PLC0415 - beside this script

        servers = start_servers(self.tmp)
        self.children += [servers.redis, servers.broker]
        self.redis_proc, self.broker_proc = servers.redis, servers.broker
        self.redis_port, self.mqtt_port = servers.redis_port, servers.mqtt_port

    def start_sink(self) -> None:
        self.sink_proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                "sink",
                "--max-seconds",
                str(self.args.max_seconds),
            ],
            stdout=subprocess.PIPE,
            stderr=(self.tmp / "sink.log").open("ab"),
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self.children.append(self.sink_proc)
        assert self.sink_proc.stdout is not None
        line = self.sink_proc.stdout.readline().strip()  # the sink prints its port first
        if not line.isdigit():
            fail(f"the sink did not start; see {self.tmp}/sink.log")
        self.sink_port = int(line)

    @property
    def sink_url(self) -> str:
        return f"http://{HOST}:{self.sink_port}"

    def sink(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.sink_url}{path}", timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read())

    def start_service(self) -> None:
        delay = self.args.delay
        channels: dict[str, Any] = {
            name: {"enabled": False} for name in ("email", "slack", "phone", "mqtt")
        }
        channels["sms"] = {
            "enabled": True,
            "account_sid": ACCOUNT,
            "auth_token": "bench-token",
            "from_number": FROM,
            "api_base_url": self.sink_url,
            "timeout": 10,
        }
        config = {
            "mqtt": {
                "url": f"mqtt://{HOST}:{self.mqtt_port}",
                "base_topic": self.base,
                "client_id": f"escbench-service-{self.run_id}",
            },
            "redis": {"url": f"redis://{HOST}:{self.redis_port}/0", "key_prefix": self.prefix},
            "alerts": {
                "grouping": {"enabled": False},
                "escalation": {
                    "policies": {
                        "p1": [
                            {"delay": 0, "channels": ["sms"], "groups": ["sink0"]},
                            {"delay": delay, "channels": ["sms"], "groups": ["sink1"]},
                        ],
                        # Unused (every alert is P1); they must name known groups.
                        **{
                            name: [{"delay": 0, "channels": ["sms"], "groups": ["sink0"]}]
                            for name in ("p2", "p3", "default")
                        },
                    },
                    "rate_limits": {"sms": {"count": 100_000_000, "period": 3600}},
                    "notify_resolved": False,
                },
            },
            "channels": channels,
            "recipients": {"groups": {"sink0": {"sms": [SINK0]}, "sink1": {"sms": [SINK1]}}},
            "homeassistant": {"discovery": False},
            "http": {"enabled": False},
            "zeroconf": {"announce": False},
            "logging": {"level": "warning"},
        }
        cfg = self.tmp / "homealert.yaml"
        cfg.write_text(json.dumps(config, indent=1))  # JSON is YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEALERT_", "TWILIO_"))}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        check = subprocess.run(
            [sys.executable, "-m", "homealert_mqtt", "check-config", "--config", str(cfg)],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(self.tmp),
            timeout=60,
            check=False,
        )
        if check.returncode != 0:
            fail(f"the benchmark's config is invalid:\n{check.stdout}{check.stderr}")
        where = subprocess.run(
            [sys.executable, "-c", "import homealert_mqtt; print(homealert_mqtt.__file__)"],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(self.tmp),
            timeout=60,
            check=False,
        )
        self.service_code = str(Path(where.stdout.strip()).parent)
        self.service = subprocess.Popen(
            [sys.executable, "-m", "homealert_mqtt", "run", "--config", str(cfg)],
            stdout=(self.tmp / "service.log").open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(self.tmp),
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self.children.append(self.service)

    def stop_all(self) -> None:
        from bench_servers import stop_children  # noqa: PLC0415 - beside this script

        stop_children(self.children, grace=15)

    def alive(self) -> None:
        for name, proc in (
            ("service", self.service),
            ("sink", self.sink_proc),
            ("redis", self.redis_proc),
            ("mosquitto", self.broker_proc),
        ):
            if proc is not None and proc.poll() is not None:
                fail(f"{name} exited ({proc.returncode}); logs in {self.tmp}")

    def cpu_seconds(self) -> dict[str, float]:
        from bench_servers import process_cpu_seconds  # noqa: PLC0415 - beside this script

        used = {}
        for name, proc in (
            ("service", self.service),
            ("redis", self.redis_proc),
            ("mosquitto", self.broker_proc),
            ("sink", self.sink_proc),
        ):
            if proc is None:
                continue
            seconds = process_cpu_seconds(proc.pid)
            if seconds is not None:
                used[name] = seconds
            if name == "service":
                # Time its threads were runnable but waited for a CPU (the box is busy).
                waited = 0
                for task in Path(f"/proc/{proc.pid}/task").glob("*"):
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        waited += int((task / "schedstat").read_text().split()[1])
                used["service_runqueue_wait"] = waited / 1e9
        return used

    # -- MQTT
    def mqtt_client(self, name: str, inflight: int = 20) -> Any:
        import paho.mqtt.client as mqtt  # noqa: PLC0415
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{name}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.max_inflight_messages_set(inflight)
        connected = threading.Event()
        client.on_connect = lambda *_a: connected.set()
        client.connect(HOST, self.mqtt_port, keepalive=60)
        client.loop_start()
        if not connected.wait(10):
            fail("no CONNACK from the benchmark's broker")
        return client

    def wait_online(self, timeout: float) -> None:
        online = threading.Event()
        client = self.mqtt_client("escbench-status")

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            if msg.payload == b"online":
                online.set()

        client.on_message = on_message
        client.subscribe(f"{self.base}/status", qos=1)
        deadline = time.monotonic() + timeout
        while not online.wait(0.1):
            self.alive()
            if time.monotonic() > deadline:
                fail(f"service not online after {timeout} s; see {self.tmp}/service.log")
        client.disconnect()
        client.loop_stop()

    def publish_paced(self, count: int, seconds: float) -> dict[str, Any]:
        """`count` P1 alerts, each its own fingerprint, evenly over `seconds`.
        Returns publish wall times (ms) by sequence number and pacing facts."""
        client = self.mqtt_client("escbench-pub", inflight=1000)
        topic = f"{self.base}/in"
        sent_ms: list[int] = []
        infos = []
        behind_max = 0.0
        interval = seconds / count
        start = time.monotonic() + 0.2
        for seq in range(count):  # bounded by count
            target = start + seq * interval
            now = time.monotonic()
            if target > now:
                time.sleep(target - now)
            else:
                behind_max = max(behind_max, now - target)
            payload = json.dumps(
                {
                    "source": "bench",
                    "type": f"t{seq:05d}",
                    "severity": "critical",
                    "message": "escalation benchmark",
                }
            ).encode()
            sent_ms.append(time.time_ns() // 1_000_000)
            infos.append(client.publish(topic, payload, qos=1))
        deadline = time.monotonic() + 60
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
        unacked = sum(1 for info in infos if not info.is_published())
        elapsed = time.monotonic() - start
        client.disconnect()
        client.loop_stop()
        return {
            "sent_ms": sent_ms,
            "seconds": elapsed,
            "behind_max_s": behind_max,
            "unacked": unacked,
        }

    # -- Redis
    def alerts_in_redis(self) -> dict[str, dict[str, Any]]:
        from redis import Redis  # noqa: PLC0415

        from homealert_mqtt.store.keys import Keys  # noqa: PLC0415

        keys = Keys.for_prefix(self.prefix)
        client = Redis(host=HOST, port=self.redis_port, decode_responses=True)
        try:
            ids = [str(i) for i in client.zrange(keys.retention, 0, -1)]
            found: dict[str, dict[str, Any]] = {}
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                pipe = client.pipeline(transaction=False)
                for alert_id in chunk:
                    pipe.hmget(
                        keys.alert(alert_id),
                        "type",
                        "opened_at",
                        "first_seen",
                        "state",
                        "escalation_level",
                    )
                for alert_id, row in zip(chunk, pipe.execute(), strict=True):
                    atype, opened, first, state, level = row
                    if atype is None:
                        continue
                    found[alert_id] = {
                        "type": atype,
                        "opened_at": int(opened or first),
                        "first_seen": int(first),
                        "state": state,
                        "level": int(level or 0),
                    }
            return found
        finally:
            client.close()


def fail(message: str) -> None:
    raise SystemExit(f"benchmark failed: {message}")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


# ============================================================================ analysis
def analyse(
    records: list[list[Any]],
    alerts: dict[str, dict[str, Any]],
    sent_ms: list[int],
    count: int,
    delay_s: int,
) -> dict[str, Any]:
    by_seq: dict[int, dict[str, Any]] = {}
    for alert_id, alert in alerts.items():
        if alert["type"].startswith("t") and alert["type"][1:].isdigit():
            by_seq[int(alert["type"][1:])] = {"id": alert_id, **alert}
    id_to_seq = {v["id"]: seq for seq, v in by_seq.items()}
    arrivals: dict[str, dict[int, list[int]]] = {SINK0: defaultdict(list), SINK1: defaultdict(list)}
    unknown = 0
    for arrived_ns, _account, to, body in records:
        match = ID_IN_BODY.search(body)
        seq = id_to_seq.get(match.group(1)) if match else None
        if seq is None or to not in arrivals:
            unknown += 1
            continue
        arrivals[to][seq].append(arrived_ns // 1_000)  # microseconds

    def level(to: str, offset_ms: int) -> dict[str, Any]:
        late_ms: list[float] = []
        firsts: list[int] = []
        dues: list[int] = []
        missed = doubled = 0
        why: Counter[str] = Counter()  # where each missed alert stood in Redis at the end
        for seq in range(count):
            alert = by_seq.get(seq)
            got = arrivals[to].get(seq, [])
            if not got:
                missed += 1
                if alert is None:
                    why["never created (ingest backlog or lost)"] += 1
                elif alert["state"] == "new":
                    why["level 0 still pending"] += 1
                elif to == SINK1 and alert["state"] == "active":
                    why["level-1 timer/batch still pending"] += 1
                else:
                    why[f"{alert['state']} at level {alert['level']}, no SMS (failed or lost)"] += 1
                continue
            if len(got) > 1:
                doubled += 1
            if alert is None:
                continue
            due_ms = alert["opened_at"] + offset_ms
            dues.append(due_ms)
            first = min(got)
            firsts.append(first)
            late_ms.append(first / 1000 - due_ms)
        out: dict[str, Any] = {
            "delivered": sum(1 for s in range(count) if arrivals[to].get(s)),
            "missed": missed,
            "doubled": doubled,
            "sms_total": sum(len(v) for v in arrivals[to].values()),
            "missed_why": dict(why),
        }
        if late_ms:
            out |= {
                "lateness_ms": {
                    "min": min(late_ms),
                    "p50": pct(late_ms, 50),
                    "p90": pct(late_ms, 90),
                    "p99": pct(late_ms, 99),
                    "p999": pct(late_ms, 99.9),
                    "max": max(late_ms),
                },
                "over_250ms": sum(1 for v in late_ms if v >= GOAL_P99_MS),
            }
            # Lateness over the window, in 12 slices by due time: bursts show up here.
            first_due, slices = min(dues), 12
            width = max(1.0, (max(dues) - first_due) / slices)
            by_slice: dict[int, list[float]] = defaultdict(list)
            for due, late in zip(dues, late_ms, strict=True):
                by_slice[min(slices - 1, int((due - first_due) / width))].append(late)
            out["timeline"] = [
                {
                    "from_s": round(i * width / 1000, 1),
                    "n": len(v),
                    "p50": pct(v, 50),
                    "p99": pct(v, 99),
                    "max": max(v),
                }
                for i, v in sorted(by_slice.items())
            ]
            out["series"] = [
                [due - first_due, round(late, 1)]
                for due, late in sorted(zip(dues, late_ms, strict=True))
            ]
            span_s = (max(firsts) - min(firsts)) / 1e6
            due_span_s = (max(dues) - min(dues)) / 1000
            per_second = Counter(int(f // 1_000_000) for f in firsts)
            out |= {
                "arrival_span_s": span_s,
                "due_span_s": due_span_s,
                "rate_per_s": len(firsts) / span_s if span_s > 0 else float("nan"),
                "offered_per_s": len(dues) / due_span_s if due_span_s > 0 else float("nan"),
                "peak_1s": max(per_second.values()),
            }
        return out

    created = len(by_seq)
    ingest_lag = [
        by_seq[s]["first_seen"] - sent_ms[s] for s in range(min(count, len(sent_ms))) if s in by_seq
    ]
    return {
        "created": created,
        "unknown_sms": unknown,
        "ingest_lag_ms": {
            "p50": pct(ingest_lag, 50),
            "p99": pct(ingest_lag, 99),
            "max": max(ingest_lag) if ingest_lag else float("nan"),
        },
        "level0": level(SINK0, 0),
        "level1": level(SINK1, delay_s * 1000),
    }


# ============================================================================ profile
def start_profile(bench: Bench, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists() or bench.service is None:
        print("(--profile: py-spy not found in the venv; pip install py-spy)", file=sys.stderr)
        return None
    out = bench.tmp / "service.collapsed"
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(bench.service.pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "100",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=(bench.tmp / "py-spy.log").open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def profile_summary(path: Path, top: int = 22) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    if not path.exists():
        return "(no profile written; see py-spy.log)"
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples = int(n)
        total += samples
        frames = [
            re.sub(r" \(.*/(site-packages|homealert_mqtt|lib/python3\.\d+)/", r" (\1/", f)
            for f in stack.split(";")[1:]
        ]  # [0] is the thread
        if frames:
            own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "(empty profile)"
    lines = [f"py-spy, {total} on-CPU samples at 100 Hz", "  self %   function"]
    lines += [f"  {100 * n / total:6.1f}   {f}" for f, n in own.most_common(top)]
    lines += ["  incl %   function (homealert_mqtt, redis, twilio, aiohttp, jinja2)"]
    ours = [
        (f, n)
        for f, n in inclusive.most_common()
        if any(k in f for k in ("homealert_mqtt", "redis/", "twilio/", "aiohttp/", "jinja2/"))
    ]
    lines += [f"  {100 * n / total:6.1f}   {f}" for f, n in ours[:top]]
    return "\n".join(lines)


# ============================================================================ main
def run(args: argparse.Namespace) -> int:
    bench = Bench(args)
    load_start = os.getloadavg()
    from bench_servers import watchdog as start_watchdog  # noqa: PLC0415 - beside this script

    watchdog = start_watchdog(args.max_seconds, bench.tmp, bench.stop_all)
    try:
        print(f"escalation benchmark: logs in {bench.tmp}", flush=True)
        bench.start_servers()
        bench.start_sink()
        print(
            f"sink capacity: {BASELINE_REQUESTS} POSTs, {BASELINE_CONCURRENCY} in flight ...",
            flush=True,
        )
        capacity = asyncio.run(
            sink_capacity(bench.sink_url, BASELINE_REQUESTS, BASELINE_CONCURRENCY)
        )
        bench.start_service()
        bench.wait_online(60)
        time.sleep(1)  # its first resync and summary
        count, window, delay = args.alerts, args.window, args.delay
        print(
            f"publishing {count} alerts over {window} s ({count / window:.0f}/s); level 1 due"
            f" {delay} s after each ...",
            flush=True,
        )
        cpu_start = bench.cpu_seconds()
        published = bench.publish_paced(count, window)
        if published["unacked"]:
            fail(f"{published['unacked']} alerts were not acknowledged by the broker")
        sent_ms = published["sent_ms"]
        first_due = sent_ms[0] / 1000 + delay
        last_due = sent_ms[-1] / 1000 + delay
        # Wait for the level-1 window: sample CPU at its start and end, poll the sink.
        while time.time() < first_due - 0.5:
            bench.alive()
            time.sleep(min(0.5, max(0.01, first_due - 0.5 - time.time())))
        cpu_window = bench.cpu_seconds()
        window_started = time.monotonic()
        spy = start_profile(bench, last_due - time.time() + 1) if args.profile else None
        expected = 2 * count  # level 0 and level 1
        deadline = last_due + args.grace
        cpu_window_end: dict[str, float] | None = None
        while time.time() < deadline:  # bounded: grace after the last due time
            bench.alive()
            if cpu_window_end is None and time.time() >= last_due + 0.5:
                cpu_window_end = bench.cpu_seconds()
                window_seconds = time.monotonic() - window_started
            if time.time() > last_due and bench.sink("/_stats")["records"] >= expected:
                break
            time.sleep(0.5)
        if cpu_window_end is None:
            cpu_window_end = bench.cpu_seconds()
            window_seconds = time.monotonic() - window_started
        time.sleep(2)  # a second copy would arrive in this time
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(max(1, last_due + 3 - time.time()) + 10)
            if spy.poll() is None:
                spy.terminate()
        records = bench.sink("/_records")
        alerts = bench.alerts_in_redis()
        cpu_end = bench.cpu_seconds()
    finally:
        bench.stop_all()
        watchdog.cancel()

    result = analyse(records, alerts, sent_ms, count, delay)
    result |= {
        "alerts": count,
        "window_s": window,
        "delay_s": delay,
        "grace_s": args.grace,
        "design": (
            f"{count} P1 alerts published to <base>/in paced evenly over {window} s"
            f" ({count / window:.0f}/s), level 1 at D = {delay} s after creation, so the"
            f" {count} level-1 timers fall due over ~{window} s after the ingest is over"
        ),
        "due_time": "opened_at (the alert's first_seen, service clock) read from Redis + D",
        "publish": {k: v for k, v in published.items() if k != "sent_ms"},
        "sink_capacity": capacity,
        "cpu_s": {
            "ingest": {k: cpu_window[k] - cpu_start.get(k, 0) for k in cpu_window},
            "level1_window": {k: cpu_window_end[k] - cpu_window.get(k, 0) for k in cpu_window_end},
            "level1_window_wall_s": window_seconds,
            "total": {k: cpu_end[k] - cpu_start.get(k, 0) for k in cpu_end},
        },
        "logs": str(bench.tmp),
        "service_code": bench.service_code,
        "machine": {"cpus": os.cpu_count(), "load_start": load_start, "load_end": os.getloadavg()},
    }
    code = report(result)
    if args.profile:
        summary = profile_summary(bench.tmp / "service.collapsed")
        result["profile"] = summary
        print("\nwhere the service's time goes in the level-1 window:\n" + summary)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return code


def report(r: dict[str, Any]) -> int:
    l0, l1 = r["level0"], r["level1"]
    cap = r["sink_capacity"]["rps"]
    late = l1.get("lateness_ms", {})
    nan = float("nan")
    rate, peak = l1.get("rate_per_s", nan), l1.get("peak_1s", nan)
    cpu = r["cpu_s"]["level1_window"]
    wall = r["cpu_s"]["level1_window_wall_s"] or nan
    p99_ok = late.get("p99", nan) < GOAL_P99_MS
    correct = l1["missed"] == 0 and l1["doubled"] == 0

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows = [
        ("level-1 lateness p50", f"{late.get('p50', nan):.1f} ms", "", ""),
        ("level-1 lateness p90", f"{late.get('p90', nan):.1f} ms", "", ""),
        (
            "level-1 lateness p99",
            f"{late.get('p99', nan):.1f} ms",
            f"< {GOAL_P99_MS:.0f} ms",
            verdict(p99_ok),
        ),
        ("level-1 lateness max", f"{late.get('max', nan):.1f} ms", "", ""),
        ("level-1 lateness min", f"{late.get('min', nan):.1f} ms", ">= 0", ""),
        ("level-1 late >= 250 ms", f"{l1.get('over_250ms', 0)} of {l1['delivered']}", "", ""),
        ("level-1 missed", str(l1["missed"]), "0", verdict(l1["missed"] == 0)),
        ("level-1 doubled", str(l1["doubled"]), "0", verdict(l1["doubled"] == 0)),
        (
            "level-1 notifications/s",
            f"{rate:.1f} (peak 1 s: {peak})",
            f"offered {l1.get('offered_per_s', nan):.1f}/s",
            "",
        ),
        ("sink capacity", f"{cap:.0f} req/s", f"{BASELINE_CONCURRENCY} in flight", ""),
        ("service / sink", f"{rate / cap:.3f} (peak {peak / cap:.3f})", "", ""),
        (
            "service CPU, window",
            f"{100 * cpu.get('service', nan) / wall:.0f} %",
            f"redis {100 * cpu.get('redis', nan) / wall:.0f} %",
            "",
        ),
        (
            "CPU per level-1 SMS",
            f"{1000 * cpu.get('service', nan) / max(1, l1['delivered']):.2f} ms",
            "window CPU / delivered",
            "",
        ),
        (
            "service waiting for CPU",
            f"{100 * cpu.get('service_runqueue_wait', nan) / wall:.0f} %",
            "of the window",
            "",
        ),
        (
            "level-0 latency p50/p99",
            f"{l0.get('lateness_ms', {}).get('p50', nan):.1f} / "
            f"{l0.get('lateness_ms', {}).get('p99', nan):.1f} ms",
            "first_seen -> sink",
            "",
        ),
        ("level-0 missed/doubled", f"{l0['missed']} / {l0['doubled']}", "", ""),
        ("alerts created", f"{r['created']} of {r['alerts']}", "", ""),
    ]
    print()
    print(f"design:   {r['design']}")
    print(f"due time: {r['due_time']}")
    machine = r["machine"]
    print(
        f"machine:  {machine['cpus']} CPUs, load average {machine['load_start'][0]:.1f} at start,"
        f" {machine['load_end'][0]:.1f} at end; service code {r['service_code']}"
    )
    print(
        f"pacing:   published in {r['publish']['seconds']:.1f} s, at most "
        f"{1000 * r['publish']['behind_max_s']:.0f} ms behind schedule; level-1 due span "
        f"{l1.get('due_span_s', nan):.1f} s, arrivals span {l1.get('arrival_span_s', nan):.1f} s"
    )
    print()
    print(f"{'measure':<26}{'value':<28}{'goal / context':<22}verdict")
    print("-" * 84)
    for name, value, goal, ok in rows:
        print(f"{name:<26}{value:<28}{goal:<22}{ok}")
    print("-" * 84)
    overall = p99_ok and correct
    print(f"GOAL (p99 lateness < {GOAL_P99_MS:.0f} ms, none missed or doubled): {verdict(overall)}")
    if l1.get("timeline"):
        print(
            "level-1 lateness by due time (ms):  "
            + "  ".join(
                f"+{t['from_s']:g}s {t['p50']:.0f}/{t['p99']:.0f}/{t['max']:.0f}"
                for t in l1["timeline"]
            )
            + "   (slice start: p50/p99/max)"
        )
    if l1["missed"]:
        print(
            "level-1 missed, by where the alert stood in Redis at the end: "
            + "; ".join(f"{n} {why}" for why, n in l1["missed_why"].items())
        )
    if r["unknown_sms"]:
        print(f"note: {r['unknown_sms']} SMS at the sink could not be matched to an alert")
    return 0 if correct else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--role"]:
        role = argparse.ArgumentParser()
        role.add_argument("--role", choices=("sink",))
        role.add_argument("--max-seconds", type=float, default=600)
        ns = role.parse_args(argv)
        role_sink(ns.max_seconds)
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts (default 10000)")
    parser.add_argument(
        "--window",
        type=float,
        default=60,
        help="seconds the alerts (and so their level-1 timers) spread over",
    )
    parser.add_argument(
        "--delay", type=int, default=None, help="level-1 delay D in seconds (default: window + 5)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=15,
        help="seconds after the last due time before counting missed",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the service with py-spy during the level-1 window",
    )
    parser.add_argument("--max-seconds", type=float, default=600, help="hard stop (default 600)")
    args = parser.parse_args(argv)
    if args.alerts < 1 or args.window <= 0 or args.grace < 0:
        parser.error("--alerts and --window must be positive, --grace not negative")
    if args.delay is None:
        args.delay = math.ceil(args.window) + 5
    if args.delay < args.window:
        parser.error("--delay must be at least --window (level 1 after the ingest is over)")
    return run(args)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
