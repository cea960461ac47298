"""Real Redis and Mosquitto processes on free loopback ports, for tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
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


class MissingServerError(RuntimeError):
    pass


@dataclass
class RedisServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = find_redis_server()
        if binary is None:
            raise MissingServerError("redis-server not found: run the tests with scripts/test")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = redis_args(binary, self.port, self.data_dir, appendonly=self.appendonly)
        if self.appendonly:
            args += ["--appendfsync", "always"]
        self.process = spawn(args, self.data_dir / "redis.log")
        wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@dataclass
class MosquittoServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoServer:
        binary = find_mosquitto()
        if binary is None:
            raise MissingServerError("mosquitto not found: run the tests with scripts/test")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(mosquitto_conf(self.port, self.data_dir))
        self.process = spawn([binary, "-c", str(conf)], self.data_dir / "mosquitto.log")
        wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
