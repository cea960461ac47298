"""The Home Assistant app (add-on) in homeassistant-addon/, without a Supervisor.

A config.yaml the Supervisor rejects shows no error in Home Assistant: the store logs a
warning and the app is simply missing; an unknown key is dropped without a word. So the
manifest is checked here against the Supervisor's rules, written down from its source
(supervisor/apps/validate.py, options.py, const.py and store/data.py, read 2026-12):
required keys, the known keys, the value shapes, and the option schema's element types.
The rest runs for real: the options mapped to a config the service loads, the service
answering the watchdog's URL on that config, and Redis on the app's redis.conf keeping
its AOF under the data folder. The image is built only where a Docker engine answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio
import yaml

from homealert_mqtt.config import load_config
from homealert_mqtt.embedded import free_port, wait_for_port
from homealert_mqtt.ha_addon import HEALTH_PORT, REDIS_URL
from homealert_mqtt.models import Priority
from tests.servers import MosquittoServer
from tests.waits import ROOT, eventually, subprocess_env

APP = ROOT / "homeassistant-addon"
S6 = APP / "rootfs/etc/s6-overlay/s6-rc.d"

# -- the Supervisor's rules (facts from its source; the checks are written here) ---------
SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
SERVICE = re.compile(r"^(?P<service>mqtt|mysql):(?P<rights>provide|want|need)$")
WATCHDOG = re.compile(r"^(?:https?|\[PROTO:\w+\]|tcp):\/\/\[HOST\]:(\[PORT:\d+\]|\d+).*$")
VOLUME = re.compile(
    r"^(data|config|ssl|addons|backup|share|media|homeassistant_config|all_addon_configs"
    r"|addon_config)(?::(rw|ro))?$"
)
SCHEMA_ELEMENT = re.compile(
    r"^(?:|bool|email|url|port|device(?:\(subsystem=[a-z]+\))?"
    r"|str(?:\(\d*,\d*\))?|password(?:\(\d*,\d*\))?|int(?:\(-?\d*,-?\d*\))?"
    r"|float(?:\(-?\d*\.?\d*,-?\d*\.?\d*\))?|match\(.*\)|list\(.+\))\??$"
)
BUILD_IMAGE = re.compile(r"^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)(:[\.\-\w{}]+)?$")
ARCH = {"aarch64", "amd64"}  # armhf, armv7 and i386 are deprecated: they warn
STARTUP = {"initialize", "system", "services", "application", "once"}
BOOT = {"auto", "manual", "manual_only"}
STAGE = {"stable", "experimental", "deprecated"}
# Every key the schema knows; it removes others silently (extra=REMOVE_EXTRA).
KNOWN = {
    "name", "version", "slug", "description", "arch", "machine", "url", "startup", "boot",
    "init", "advanced", "stage", "ports", "ports_description", "watchdog", "webui",
    "ingress", "ingress_port", "ingress_entry", "ingress_stream", "panel_icon",
    "panel_title", "panel_admin", "homeassistant", "host_network", "host_pid", "host_ipc",
    "host_uts", "host_dbus", "devices", "udev", "tmpfs", "map", "environment",
    "privileged", "apparmor", "full_access", "audio", "video", "gpio", "usb", "uart",
    "devicetree", "kernel_modules", "realtime", "hassio_api", "hassio_role",
    "homeassistant_api", "stdin", "legacy", "docker_api", "auth_api", "services",
    "discovery", "backup_exclude", "backup_pre", "backup_post", "backup", "options",
    "schema", "image", "ulimits", "timeout", "journald", "breaking_versions",
}  # fmt: skip
DEPRECATED = {"advanced", "codenotary"}  # accepted, but the Supervisor warns


def manifest() -> dict[str, Any]:
    data = yaml.safe_load((APP / "config.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def schema_problems(schema: dict[str, Any], options: dict[str, Any], path: str = "") -> list[str]:
    """Each schema element a type the Supervisor parses; options and schema the same keys;
    lists of one element type; dictionaries at most two levels deep."""
    problems = []
    if set(schema) != set(options):
        problems.append(f"{path or 'options'}: keys differ from the schema's")
    for key, element in schema.items():
        here = f"{path}{key}"
        if isinstance(element, dict):
            if path.count(".") >= 1:
                problems.append(f"{here}: nested deeper than two levels")
            problems += schema_problems(element, options.get(key) or {}, here + ".")
        elif isinstance(element, list):
            if len(element) != 1 or not isinstance(options.get(key), list):
                problems.append(f"{here}: a list schema has one element, its option a list")
            elif isinstance(element[0], str) and not SCHEMA_ELEMENT.match(element[0]):
                problems.append(f"{here}: {element[0]!r} is no schema type")
        elif not isinstance(element, str) or not SCHEMA_ELEMENT.match(element):
            problems.append(f"{here}: {element!r} is no schema type")
    return problems


def test_manifest_passes_the_supervisors_rules() -> None:
    config = manifest()
    for key, kind in (("name", str), ("version", str), ("slug", str), ("description", str)):
        assert isinstance(config.get(key), kind), key
    assert SLUG.match(config["slug"])
    assert set(config) <= KNOWN, set(config) - KNOWN
    assert not set(config) & DEPRECATED
    assert config["arch"]
    assert set(config["arch"]) <= ARCH
    assert config.get("startup", "application") in STARTUP
    assert config.get("boot", "auto") in BOOT
    assert config.get("stage", "stable") in STAGE
    assert config.get("backup", "hot") in ("hot", "cold")
    assert isinstance(config.get("init", True), bool)
    assert 10 <= int(config.get("timeout", 10)) <= 300
    assert all(SERVICE.match(s) for s in config.get("services", []))
    for entry in config.get("map", []):
        assert (isinstance(entry, str) and VOLUME.match(entry)) or "type" in entry, entry
    assert WATCHDOG.match(config["watchdog"])
    assert schema_problems(config["schema"], config["options"]) == []


def test_manifest_says_what_the_app_needs() -> None:
    config = manifest()
    assert "mqtt:need" in config["services"]
    # The watchdog asks the service's own health endpoint, on the port the app sets.
    assert config["watchdog"] == f"http://[HOST]:[PORT:{HEALTH_PORT}]/healthz"
    assert config["init"] is False  # s6-overlay from the base image is the init
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert config["version"] == project["version"]
    # A schema element the Supervisor cannot parse hides the app: check the checker.
    assert schema_problems({"a": "str=x"}, {"a": ""}) == ["a: 'str=x' is no schema type"]


def test_repository_and_build_files() -> None:
    repository = yaml.safe_load((ROOT / "repository.yaml").read_text())
    assert isinstance(repository["name"], str)
    build = yaml.safe_load((APP / "build.yaml").read_text())
    assert set(build["build_from"]) == set(manifest()["arch"])
    for image in build["build_from"].values():
        assert BUILD_IMAGE.match(image), image
        assert image.startswith("ghcr.io/home-assistant/")  # HA's base images
    assert all(isinstance(v, str) for v in build.get("args", {}).values())


def test_the_supervisor_finds_exactly_this_app_in_the_repository() -> None:
    """It reads every `**/config.{yaml,yml,json}` outside dot-folders and rootfs as an
    app: another such file in the repository would be a broken app in the store."""
    found = sorted(
        path.relative_to(ROOT).as_posix()
        for path in ROOT.glob("**/config.*")
        if path.suffix in (".yaml", ".yml", ".json")
        and not any(p.startswith(".") or p == "rootfs" for p in path.relative_to(ROOT).parts)
    )
    assert found == ["homeassistant-addon/config.yaml"]


def test_dockerfile_and_s6_services() -> None:
    dockerfile = (APP / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{BUILD_FROM\}$", dockerfile, re.MULTILINE)
    assert "apk add --no-cache redis" in dockerfile
    conf = (APP / "rootfs/etc/homealert/redis.conf").read_text()
    assert re.search(r"^appendonly yes$", conf, re.MULTILINE)
    assert re.search(r"^dir /data/", conf, re.MULTILINE)
    assert re.search(r"^bind 127\.0\.0\.1$", conf, re.MULTILINE)
    assert sorted(p.name for p in (S6 / "user/contents.d").iterdir()) == ["homealert", "redis"]
    assert (S6 / "homealert/dependencies.d/redis").exists()
    for service in ("redis", "homealert"):
        assert (S6 / service / "type").read_text().strip() == "longrun"
    run = (S6 / "homealert/run").read_text()
    for name in ("MQTT_HOST", "MQTT_PORT", "MQTT_USERNAME", "MQTT_PASSWORD", "MQTT_SSL"):
        assert f'{name}="$(bashio::services mqtt' in run, name
    assert "exec homealert-mqtt run --config /data/homealert.yaml" in run
    assert "--out /data/homealert.yaml" in run
    for script in (S6 / "redis/run", S6 / "homealert/run", S6 / "homealert/finish"):
        assert script.read_text().startswith("#!/command/with-contenv bashio\n"), script
        assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
        checked = subprocess.run(
            ["bash", "-n", str(script)], check=False, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr


# -- the options, mapped and run --------------------------------------------------------

BROKER = {
    "MQTT_HOST": "core-mosquitto",
    "MQTT_PORT": "1883",
    "MQTT_USERNAME": "addons",
    "MQTT_PASSWORD": "p@ss:w/rd#1",
    "MQTT_SSL": "false",
}


def write_options(folder: Path, **changes: Any) -> Path:
    options = manifest()["options"]
    options.update(changes)
    path = folder / "options.json"
    path.write_text(json.dumps(options))
    return path


def map_options(tmp_path: Path, options: Path, user: Path | None = None, **env: str):
    out = tmp_path / "homealert.yaml"
    args = ["--options", str(options), "--user-config", str(user or tmp_path / "none.yaml")]
    result = subprocess.run(
        [sys.executable, "-m", "homealert_mqtt.ha_addon", *args, "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(**{**BROKER, **env}),
        cwd=ROOT,
        timeout=60,
    )
    return result, out


def test_default_options_make_a_valid_config(tmp_path: Path) -> None:
    result, out = map_options(tmp_path, write_options(tmp_path))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds the broker's password
    settings = load_config(out, environ={})
    assert (settings.mqtt.host, settings.mqtt.port) == ("core-mosquitto", 1883)
    assert (settings.mqtt.username, settings.mqtt.password) == ("addons", "p@ss:w/rd#1")
    assert settings.redis.url == REDIS_URL
    assert (settings.http.enabled, settings.http.host, settings.http.port) == (
        True,
        "0.0.0.0",  # noqa: S104 - inside the app's container, for the watchdog
        HEALTH_PORT,
    )
    assert settings.homeassistant.discovery
    assert settings.mqtt.base_topic == "homealert"
    assert "p@ss" not in result.stdout + result.stderr
    assert settings.recipients == {"oncall": {}}
    enabled = {name for name, section in settings.channels.items() if section["enabled"]}
    assert enabled == {"mqtt"}  # no placeholders: off until the options fill them in


def test_filled_options_enable_their_channels(tmp_path: Path) -> None:
    options = write_options(
        tmp_path,
        recipients={"email": ["me@example.org"], "sms": ["+4912345"], "phone": [], "slack": []},
        smtp={
            "server": "mail.example.org",
            "port": 465,
            "security": "ssl",
            "username": "me",
            "password": "s3cret",
            "from_address": "home@example.org",
        },
        twilio={"account_sid": "AC123", "auth_token": "tok", "from_number": "+4900000"},
        escalate_after_minutes=5,
        base_topic="house",
    )
    result, out = map_options(tmp_path, options, MQTT_SSL="true", MQTT_PORT="8883")
    assert result.returncode == 0, result.stderr
    settings = load_config(out, environ={})
    assert settings.mqtt.tls.enabled
    assert settings.mqtt.port == 8883
    assert settings.mqtt.base_topic == "house"
    enabled = {name for name, section in settings.channels.items() if section["enabled"]}
    assert enabled == {"mqtt", "email", "sms", "phone"}
    assert settings.recipients == {"oncall": {"email": ("me@example.org",), "sms": ("+4912345",)}}
    p1 = settings.alerts.escalation.policy_for(Priority.P1)
    assert [level.delay for level in p1.levels] == [0, 300]


def test_a_config_file_in_the_app_folder_replaces_the_options(tmp_path: Path) -> None:
    user = tmp_path / "user.yaml"
    user.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"base_topic": "mine", "url": "mqtt://elsewhere:1"},
                "redis": {"url": "redis://elsewhere:2/0"},
                "logging": {"level": "debug"},
            }
        )
    )
    result, out = map_options(tmp_path, write_options(tmp_path), user)
    assert result.returncode == 0, result.stderr
    settings = load_config(out, environ={})
    assert (settings.mqtt.base_topic, settings.log_level) == ("mine", "debug")
    # What the container decides wins: its broker, its Redis, its health endpoint.
    assert (settings.mqtt.host, settings.redis.url) == ("core-mosquitto", REDIS_URL)
    assert settings.http.port == HEALTH_PORT

    user.write_text(yaml.safe_dump({"alerts": {"grouping": {"window": "five"}}}))
    bad, _ = map_options(tmp_path, write_options(tmp_path), user)
    assert bad.returncode == 1
    assert "alerts.grouping.window: expected int, got 'five'" in bad.stderr
    assert "Traceback" not in bad.stderr
    no_broker, _ = map_options(tmp_path, write_options(tmp_path), MQTT_HOST="")
    assert no_broker.returncode == 1
    assert "the Supervisor named no MQTT broker" in no_broker.stderr


@pytest.fixture
def app_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real Redis on the app's redis.conf, its /data moved to a temporary folder."""
    data = tmp_path / "data"
    (data / "redis").mkdir(parents=True)
    conf = (APP / "rootfs/etc/homealert/redis.conf").read_text().replace("/data/", f"{data}/")
    (tmp_path / "redis.conf").write_text(conf)
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    server = subprocess.Popen(
        [binary, str(tmp_path / "redis.conf"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, None)
        yield port, data
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.slow
async def test_the_app_answers_its_watchdog_and_keeps_redis_in_an_aof(
    tmp_path: Path, mqtt_broker: MosquittoServer, start_service, app_redis: tuple[int, Path]
) -> None:
    """The service on the config the options make, its Redis on the app's redis.conf,
    and the watchdog's URL asked over HTTP."""
    redis_port, data = app_redis
    broker = {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(mqtt_broker.port)}
    result, out = map_options(tmp_path, write_options(tmp_path), **broker)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(out.read_text())
    http_port = free_port()  # the app's 9466 may be taken on this machine
    config["http"].update(host="127.0.0.1", port=http_port)
    config["redis"]["url"] = f"redis://127.0.0.1:{redis_port}/0"
    config["homeassistant"]["discovery"] = False
    out.write_text(yaml.safe_dump(config))
    await start_service(load_config(out, environ={}))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{http_port}/healthz") as response,
    ):
        assert response.status == 200
        assert (await response.json())["status"] == "ok"

    aof = data / "redis" / "appendonlydir"
    await eventually(lambda: aof.is_dir() and any(aof.iterdir()), what="an AOF under /data")
    client = redis.asyncio.Redis(port=redis_port)
    assert await client.config_get("appendonly") == {"appendonly": "yes"}
    await client.aclose()


def _docker_engine() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return (
            subprocess.run(
                [docker, "info"], check=False, capture_output=True, timeout=20
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_image_builds_where_docker_runs(tmp_path: Path) -> None:
    if not _docker_engine():
        pytest.skip("no Docker engine here: the app's image is built where one runs")
    context = tmp_path / "app"
    shutil.copytree(APP, context)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(context / "wheels"), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    base = yaml.safe_load((APP / "build.yaml").read_text())["build_from"]["amd64"]
    tag = f"homealert-ha-app-test:{os.getpid()}"
    built = subprocess.run(
        ["docker", "build", "--build-arg", f"BUILD_FROM={base}", "-t", tag, str(context)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        version = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "homealert-mqtt", tag, "--version"],
            check=False,
            capture_output=True,
            text=True,
        )
        assert version.returncode == 0, version.stderr
        redis_there = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "redis-server", tag, "--version"],
            check=False,
            capture_output=True,
        )
        assert redis_there.returncode == 0
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], check=False, capture_output=True)
