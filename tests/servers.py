"""Real Redis and Mosquitto processes on free loopback ports, for tests and benchmarks.

Both take optional security settings (a password, a TLS certificate) so that the tests
can run the service against servers set up the way a house would set them up.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

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
from tests.certs import Certs


class MissingServerError(RuntimeError):
    pass


@dataclass
class RedisServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None  # requirepass
    tls: Certs | None = None  # TLS only: `port` is the TLS port, the plain port is off

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = find_redis_server()
        if binary is None:
            raise MissingServerError("redis-server not found: run the tests with scripts/test")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = redis_args(binary, self.port, self.data_dir, appendonly=self.appendonly)
        if self.appendonly:
            args += ["--appendfsync", "always"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "no",
            ]
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


def mosquitto_password_line(user: str, password: str) -> str:
    """A password_file line as `mosquitto_passwd` writes it ($7$: PBKDF2-SHA512)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass
class MosquittoServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, str] | None = None  # a password file; anonymous clients refused
    tls: Certs | None = None  # the listener speaks TLS only
    persistence: bool = True
    acl: str | None = None  # an acl_file's text (applies to anonymous clients too)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def config(self) -> str:
        text = mosquitto_conf(self.port, self.data_dir, persistence=self.persistence)
        extra: list[str] = []
        if self.users is not None:
            text = text.replace("allow_anonymous true\n", "allow_anonymous false\n")
            passwords = self.data_dir / "passwords"
            passwords.write_text(
                "".join(mosquitto_password_line(u, p) + "\n" for u, p in self.users.items())
            )
            passwords.chmod(0o644)
            extra.append(f"password_file {passwords}")
        if self.acl is not None:
            acl_file = self.data_dir / "acl"
            acl_file.write_text(self.acl)
            acl_file.chmod(0o644)
            extra.append(f"acl_file {acl_file}")
        if self.tls is not None:
            # Listener options apply to the (only) listener defined above them.
            extra += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
            ]
        return text + "".join(line + "\n" for line in extra)

    def start(self) -> MosquittoServer:
        binary = find_mosquitto()
        if binary is None:
            raise MissingServerError("mosquitto not found: run the tests with scripts/test")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(self.config())
        self.process = spawn([binary, "-c", str(conf)], self.data_dir / "mosquitto.log")
        wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def log(self) -> str:
        path = self.data_dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
