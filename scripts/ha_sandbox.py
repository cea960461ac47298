"""A real Home Assistant in a throw-away config folder, driven over its REST API.

Used by the opt-in test against a real Home Assistant
(`tests/homeassistant/test_real_home_assistant.py`) and by
`scripts/ha_dashboard_screenshot.py`. Standard library only, so it runs from the
project's venv; Home Assistant itself runs from a venv of its own (it wants a newer
Python than the project):

    ~/.pyenv/versions/3.13.0/bin/python3 -m venv /tmp/ha-venv
    /tmp/ha-venv/bin/pip install homeassistant==2025.4.4 paho-mqtt==2.1.0 \
        home-assistant-frontend==20250411.0

What `HomeAssistant` automates, the way a person would click through it:

1. onboarding: the owner account (`POST /api/onboarding/users`), its token
   (`POST /auth/token` with the auth code), and the remaining onboarding steps, so the
   frontend opens on the dashboard rather than on the onboarding wizard;
2. the MQTT integration through its config flow (`POST /api/config/config_entries/flow`
   with handler `mqtt`, then the broker's host and port);
3. dashboards in YAML mode (`lovelace: dashboards:` in `configuration.yaml`);
4. a login for a browser: an auth code from the login flow, handed to the frontend
   in the URL the way its own login page does (`?auth_callback=1&code=...&state=...`).

HA's HTTP server binds 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PYTHON = "/tmp/ha-venv/bin/python"  # noqa: S108 - the documented venv path
USERNAME = "owner"


def ha_python() -> str:
    """The interpreter of the Home Assistant venv (`HOMEALERT_HA_PYTHON` or the default)."""
    return os.environ.get("HOMEALERT_HA_PYTHON", DEFAULT_PYTHON)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _configuration(port: int, dashboards: dict[str, Path]) -> str:
    lines = [
        "homeassistant:",
        "  name: Home",
        "  time_zone: UTC",
        "  unit_system: metric",
        "  country: GB",
        "  language: en",
        "http:",
        "  server_host: 127.0.0.1",
        f"  server_port: {port}",
        "config:",
        "frontend:",
        "logger:",
        "  default: warning",
        "  logs:",
        "    homeassistant.components.mqtt.discovery: debug",
        "lovelace:",
        "  mode: storage",
    ]
    if dashboards:
        lines.append("  dashboards:")
        for url_path, yaml_file in dashboards.items():
            lines += [
                f"    {url_path}:",
                "      mode: yaml",
                "      title: HomeAlert",
                "      icon: mdi:bell-alert",
                "      show_in_sidebar: true",
                f"      filename: {yaml_file.name}",
            ]
    return "\n".join(lines) + "\n"


class HomeAssistantError(RuntimeError):
    pass


@dataclass
class HomeAssistant:
    """One Home Assistant process on 127.0.0.1, its config in `config_dir`."""

    config_dir: Path
    python: str = field(default_factory=ha_python)
    port: int = field(default_factory=free_port)
    token: str | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    process: subprocess.Popen[bytes] | None = None
    # yaml dashboards: url path (with a dash) -> file; copied into config_dir
    dashboards: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client_id(self) -> str:
        return f"{self.url}/"

    # -- process
    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        local = {}
        for url_path, source in self.dashboards.items():
            target = self.config_dir / f"{url_path}.yaml"
            target.write_text(source.read_text())
            local[url_path] = target
        (self.config_dir / "configuration.yaml").write_text(_configuration(self.port, local))

    def start(self, timeout: float = 240.0) -> None:
        """Start HA and wait until it runs (the first start installs what it lacks)."""
        if not (self.config_dir / "configuration.yaml").exists():
            self.write_config()
        log = (self.config_dir / "sandbox.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [self.python, "-m", "homeassistant", "-c", str(self.config_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HomeAssistantError(f"Home Assistant exited: see {log.name}")
            if self._running():
                return
            time.sleep(0.5)
        raise HomeAssistantError(f"Home Assistant did not start in {timeout:.0f} s")

    def wait_running(self, timeout: float = 120.0) -> None:
        """After onboarding: until HA reports RUNNING (every integration set up)."""
        self.wait_for("Home Assistant to run", self._running, timeout)

    def _running(self) -> bool:
        try:
            if self.token is None:
                # Before onboarding only the onboarding API answers without a token.
                self.request("GET", "/api/onboarding", auth=False)
                return True
            return self.request("GET", "/api/config").get("state") == "RUNNING"
        except (OSError, HomeAssistantError):
            return False

    def stop(self, timeout: float = 60.0) -> None:
        """Stop as a service manager would (SIGTERM): HA saves its registries."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    # -- HTTP
    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        auth: bool = True,
        form: bool = False,
    ) -> Any:
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data, headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:  # noqa: S310 - loopback
                text = answer.read().decode()
        except urllib.error.HTTPError as err:
            raise HomeAssistantError(f"{method} {path}: {err.code} {err.read()[:300]!r}") from err
        return json.loads(text) if text else None

    # -- onboarding and integrations
    def onboard(self) -> None:
        """Create the owner, get a token, finish the onboarding steps."""
        created = self.request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": self.client_id,
                "name": "Owner",
                "username": USERNAME,
                "password": self.password,
                "language": "en",
            },
            auth=False,
        )
        self.token = self._token_for(created["auth_code"])
        self.request("POST", "/api/onboarding/core_config", {})
        self.request("POST", "/api/onboarding/analytics", {})
        self.request(
            "POST",
            "/api/onboarding/integration",
            {"client_id": self.client_id, "redirect_uri": f"{self.url}/?auth_callback=1"},
        )

    def _token_for(self, code: str) -> str:
        tokens = self.request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": code, "client_id": self.client_id},
            auth=False,
            form=True,
        )
        return str(tokens["access_token"])

    def add_mqtt(self, host: str, port: int) -> None:
        """The MQTT integration, through its config flow, as Settings → Add integration."""
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("type") == "form" and flow.get("step_id") == "user":
            # Newer versions may ask first which way to set the broker up.
            step = {"next_step_id": "broker"}
            flow = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", step)
        result = self.request(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"broker": host, "port": port},
        )
        if result.get("type") != "create_entry":
            raise HomeAssistantError(f"MQTT config flow did not finish: {result}")

    def login_url(self, path: str) -> str:
        """A URL that opens `path` logged in: an auth code from the login flow, handed
        to the frontend the way its own login page hands it over."""
        flow = self.request(
            "POST",
            "/auth/login_flow",
            {
                "client_id": self.client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": f"{self.url}{path}?auth_callback=1",
            },
            auth=False,
        )
        done = self.request(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": self.client_id, "username": USERNAME, "password": self.password},
            auth=False,
        )
        state = base64.b64encode(
            json.dumps({"hassUrl": self.url, "clientId": self.client_id}).encode()
        ).decode()
        query = urllib.parse.urlencode({"auth_callback": 1, "code": done["result"], "state": state})
        return f"{self.url}{path}?{query}"

    # -- what HA knows
    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.request("GET", "/api/states")}

    def wait_for(self, what: str, check: Any, timeout: float = 60.0) -> Any:
        """Poll `check()` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.5)
        raise HomeAssistantError(f"timed out waiting for {what}")

    def registry(self, name: str) -> list[dict[str, Any]]:
        """Entries of `.storage/core.<name>` (entity_registry, device_registry), as saved."""
        data = json.loads((self.config_dir / ".storage" / f"core.{name}").read_text())
        key = "entities" if name == "entity_registry" else "devices"
        return list(data["data"][key])
