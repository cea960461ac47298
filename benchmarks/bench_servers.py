"""Redis and Mosquitto for the benchmarks: free loopback ports, the project's settings.

Redis runs as a house runs it (docker/): AOF on, fsync every second. Mosquitto gets the
project's broker settings (embedded.mosquitto_conf: max_queued_messages 100000,
max_inflight_messages 1000, set_tcp_nodelay), without persistence.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from homealert_mqtt.embedded import (
    find_mosquitto,
    find_redis_server,
    free_port,
    mosquitto_conf,
    redis_args,
    spawn,
    stop,
    wait_for_port,
)


@dataclass(frozen=True)
class Servers:
    redis: subprocess.Popen[bytes]
    broker: subprocess.Popen[bytes]
    redis_port: int
    mqtt_port: int
    broker_conf: str  # the Mosquitto config it runs with


def start_servers(tmp: Path, extra_broker_conf: Sequence[str] = ()) -> Servers:
    redis_bin, mosquitto = find_redis_server(), find_mosquitto()
    if not redis_bin or not mosquitto:
        raise SystemExit("needs redis-server and mosquitto (apt-get install both)")
    redis_port, mqtt_port = free_port(), free_port()
    (tmp / "redis").mkdir()
    (tmp / "mosquitto").mkdir()
    redis = spawn(redis_args(redis_bin, redis_port, tmp / "redis"), tmp / "redis.log")
    text = mosquitto_conf(mqtt_port, tmp / "mosquitto", persistence=False)
    text += "".join(f"{line}\n" for line in extra_broker_conf)
    conf = tmp / "mosquitto.conf"
    conf.write_text(text)
    broker = spawn([mosquitto, "-c", str(conf)], tmp / "mosquitto.log")
    wait_for_port(redis_port, redis)
    wait_for_port(mqtt_port, broker)
    return Servers(redis, broker, redis_port, mqtt_port, text)


def stop_children(children: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """Stop every child, the last started first."""
    for child in reversed(children):
        stop(child, grace)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def watchdog(seconds: float, tmp: Path, stop_all: Callable[[], None]) -> threading.Timer:
    """A started timer that stops every child and exits (code 3) after `seconds`: a
    benchmark must end by itself however the run goes."""

    def expire() -> None:
        print(f"benchmark exceeded --max-seconds; stopping (logs in {tmp})", file=sys.stderr)
        stop_all()
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer
