"""Checks of docker/ without a Docker engine.

The compose file, the Dockerfile, the broker's config and entrypoint and the
container's config are read as files; the last test runs the image's entry command
(`homealert-mqtt check-config`) outside Docker, with the environment compose gives it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
MOSQUITTO_CONF = DOCKER / "mosquitto" / "mosquitto.conf"
ENTRYPOINT = DOCKER / "mosquitto" / "entrypoint.sh"
ENV_EXAMPLE = DOCKER / ".env.example"
CONFIG = DOCKER / "config" / "homealert.yaml"
SECRETS_EXAMPLE = DOCKER / "config" / "secrets.yaml.example"
DEFAULTS = ROOT / "homealert_mqtt" / "defaults" / "homealert.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
CONTAINER_CONFIG = "/config/homealert.yaml"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    spec = compose()["services"][name]
    assert isinstance(spec, dict)
    return spec


# --- compose variable interpolation (the subset the compose file uses) ----------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"]
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in {"-", ":-"} and unset:
            return arg or ""
        if op in {"?", ":?"} and unset:
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(substitute, value)


def required_variables(text: str) -> set[str]:
    return {m["braced"] for m in _VAR.finditer(text) if m["op"] in {"?", ":?"}}


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def service_environment(name: str, env: dict[str, str]) -> dict[str, str]:
    raw = service(name).get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: interpolate(str(value), env) for key, value in raw.items()}


# --- compose ---------------------------------------------------------------------------


def test_compose_services() -> None:
    services = compose()["services"]
    assert set(services) == {"mosquitto", "redis", "homealert"}
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["redis"]["image"] == "redis:7"
    redis_command = services["redis"]["command"]
    redis_command = redis_command if isinstance(redis_command, list) else redis_command.split()
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    for spec in services.values():
        assert spec["restart"] == "unless-stopped"


def test_homealert_service() -> None:
    spec = service("homealert")
    build = spec["build"]
    assert build["context"] == ".."
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert set(spec["depends_on"]) == {"mosquitto", "redis"}
    assert "./config:/config:ro" in spec["volumes"]
    env = service_environment("homealert", env_example())
    assert re.fullmatch(r"mqtt://homealert:[^@]+@mosquitto:1883", env["HOMEALERT_MQTT_URL"])
    assert re.fullmatch(r"redis://redis:6379(/\d+)?", env["HOMEALERT_REDIS_URL"])
    assert spec.get("hostname"), "a fixed hostname keeps the MQTT client id stable"


def _bind_mounts(spec: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in spec.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = volume.split(":")[:2]
        mounts.append((source, target))
    return mounts


def test_every_referenced_file_exists() -> None:
    data = compose()
    named = set(data.get("volumes") or {})
    for name, spec in data["services"].items():
        mounts = _bind_mounts(spec)
        for source, _ in mounts:
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
        # Files named by entrypoint/command inside a bind mount must be in the repo.
        words = []
        for key in ("entrypoint", "command"):
            value = spec.get(key) or []
            words += value if isinstance(value, list) else value.split()
        for word in words:
            for source, target in mounts:
                if source.startswith(".") and word.startswith(target.rstrip("/") + "/"):
                    relative = PurePosixPath(word).relative_to(target)
                    assert (DOCKER / source / relative).is_file(), f"{name}: {word}"
    assert (DOCKER / "mosquitto" / "mosquitto.conf").is_file()
    assert (DOCKER / "config" / "homealert.yaml").is_file()


def test_mosquitto_service_mounts_its_config_and_keeps_data() -> None:
    spec = service("mosquitto")
    mounts = {t: s for s, t in _bind_mounts(spec)}
    assert mounts["/mosquitto/config"] == "./mosquitto"
    assert mounts["/mosquitto/data"] in set(compose()["volumes"])
    assert "/mosquitto/config/mosquitto.conf" in spec["command"]
    assert "/data" in {t for _, t in _bind_mounts(service("redis"))}


def test_env_example_defines_every_required_variable() -> None:
    required = required_variables(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert "HOMEALERT_MQTT_PASSWORD" in required
    example = env_example()
    assert required <= set(example)
    for name in required:
        assert "change-me" in example[name], f"{name}: example values only"
    with pytest.raises(KeyError):
        service_environment("homealert", {})


# --- Dockerfile ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    instructions = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _last(keyword: str) -> str:
    values = [rest for key, rest in dockerfile_instructions() if key == keyword]
    assert values, f"no {keyword}"
    return values[-1]


def test_dockerfile_base_and_user() -> None:
    bases = [rest.split()[0] for key, rest in dockerfile_instructions() if key == "FROM"]
    assert bases
    assert set(bases) == {"python:3.11-slim"}
    user = _last("USER").split(":")[0]
    assert user not in {"root", "0"}
    assert re.search(rf"useradd .*\b{re.escape(user)}\b", DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerfile_entrypoint_cmd_healthcheck() -> None:
    assert json.loads(_last("ENTRYPOINT")) == ["homealert-mqtt"]
    assert json.loads(_last("CMD")) == ["run", "--config", CONTAINER_CONFIG]
    healthcheck = _last("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
    assert command[:2] == ["homealert-mqtt", "health"]
    assert command[2:] in ([], ["--config", CONTAINER_CONFIG])


def _dockerignored(path: str) -> bool:
    """Docker's rule: the last matching line wins; a match on a folder covers its files."""
    ignored = False
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        patterns = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes for pat in patterns):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_the_package() -> None:
    for path in (
        "pyproject.toml",
        "homealert_mqtt/__init__.py",
        "homealert_mqtt/defaults/homealert.yaml",
        "docker/config/homealert.yaml",
    ):
        assert not _dockerignored(path), path
    for path in (
        ".venv/bin/python",
        ".git/config",
        "tests/test_docker.py",
        "benchmarks/results/x.json",
        "docker/.env",
        "docker/config/secrets.yaml",
        "homealert_mqtt/__pycache__/cli.cpython-311.pyc",
    ):
        assert _dockerignored(path), path


def test_dockerfile_copies_what_the_context_has() -> None:
    for key, rest in dockerfile_instructions():
        if key == "COPY" and "--from=" not in rest:
            sources = rest.split()[:-1]
            for source in sources:
                if source != ".":
                    assert (ROOT / source).exists(), source
                    assert not _dockerignored(source), source


# --- mosquitto ---------------------------------------------------------------------------


def mosquitto_options() -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for raw in MOSQUITTO_CONF.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options.setdefault(key, []).append(value.strip())
    return options


def test_mosquitto_conf() -> None:
    options = mosquitto_options()
    assert options["listener"] == ["1883"]
    assert options["allow_anonymous"] == ["false"]
    assert options["persistence"] == ["true"]
    assert int(options["max_queued_messages"][0]) > 1000
    assert 20 <= int(options["max_inflight_messages"][0]) <= 65535
    text = MOSQUITTO_CONF.read_text(encoding="utf-8")
    assert "1000" in text.split("max_queued_messages 100000")[0], "say why the default is raised"


def test_mosquitto_password_file_is_built_by_the_entrypoint() -> None:
    (password_file,) = mosquitto_options()["password_file"]
    script = ENTRYPOINT.read_text(encoding="utf-8")
    assert f"pwfile={password_file}" in script
    assert 'exec /docker-entrypoint.sh "$@"' in script
    assert "HOMEALERT_MQTT_PASSWORD" in script
    # the service logs in as the user the entrypoint creates
    env = service_environment("homealert", env_example())
    assert env["HOMEALERT_MQTT_URL"].startswith("mqtt://homealert:")
    assert 'mosquitto_passwd -b "$pwfile" homealert' in script


def test_entrypoint_is_valid_sh() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    result = subprocess.run(
        [sh, "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- the container's config ------------------------------------------------------------


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader that keeps `!secret` and `!env_var` as tagged tuples."""


ConfigLoader.add_constructor("!secret", lambda loader, node: ("!secret", node.value))
ConfigLoader.add_constructor("!env_var", lambda loader, node: ("!env_var", node.value))


def _keys(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    keys = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        keys.add(path)
        keys |= _keys(value, path + ".")
    return keys


def test_config_uses_only_known_keys_and_docker_hosts() -> None:
    config = yaml.load(CONFIG.read_text(encoding="utf-8"), Loader=ConfigLoader)  # noqa: S506
    defaults = yaml.safe_load(DEFAULTS.read_text(encoding="utf-8"))
    assert _keys(config) <= _keys(defaults)
    assert config["mqtt"]["url"].startswith("mqtt://mosquitto:")
    assert config["redis"]["url"].startswith("redis://redis:")


def test_config_secrets_are_in_the_example() -> None:
    text = CONFIG.read_text(encoding="utf-8")
    example = yaml.safe_load(SECRETS_EXAMPLE.read_text(encoding="utf-8"))
    for name in re.findall(r"!secret\s+(\w+)", text):
        assert name in example, name


def test_check_config_passes_with_the_compose_environment() -> None:
    """The image's entry command, outside Docker, with the environment compose sets."""
    env = dict(os.environ)
    env.update(service_environment("homealert", env_example()))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "homealert_mqtt",
            "check-config",
            "--config",
            "docker/config/homealert.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
