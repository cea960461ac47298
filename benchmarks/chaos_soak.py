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
import contextlib
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from chaos_config import TEMPLATE, service_config  # noqa: E402 - beside this script
from chaos_ledger import BROKER, REDIS, SERVICE, Kill, StoredAlert, with_online  # noqa: E402
from chaos_report import analyse, save_run  # noqa: E402
from chaos_traffic import HOST, Observer, Publisher, mqtt_client  # noqa: E402


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
                str(HERE / "chaos_sinks.py"),
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
        templates = self.tmp / "templates"
        templates.mkdir()
        (templates / "soak.j2").write_text(TEMPLATE)
        config = service_config(
            levels=self.args.levels,
            lease=self.args.lease,
            base=self.base,
            key_prefix=self.prefix,
            client_id=f"soak-service-{self.run_id}",
            mqtt_port=self.broker.port,
            redis_port=self.redis.port,
            smtp_port=self.smtp_port,
            http_url=self.http_url,
            templates=templates,
        )
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
    """A log line without its time and any word with a digit in it (ids, ports,
    counts), to count repeats of one message."""
    line = re.sub(r"^\d{4}-\d\d-\d\d \S+ ", "", line)
    return re.sub(r"[^\s'\"(),:]*\d[^\s'\"(),:]*", "#", line)[:120]


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
    halt = threading.Event()  # stops the publisher early (Ctrl-C, SIGTERM, an error)
    # SIGTERM ends the soak like Ctrl-C does: through `finally`, which stops every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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
            target=publisher.run, args=(seconds, args.rate, args.new_rate, halt), daemon=True
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
        halt.set()
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
