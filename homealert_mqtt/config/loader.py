"""Read the YAML config: `!secret` / `!env_var`, deep merge over the defaults, env overrides."""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from homealert_mqtt.config.errors import ConfigError
from homealert_mqtt.config.schema import validate
from homealert_mqtt.config.settings import Settings

ENV_MQTT_URL = "HOMEALERT_MQTT_URL"
ENV_REDIS_URL = "HOMEALERT_REDIS_URL"
SECRETS_FILE = "secrets.yaml"

# Mappings merge key by key; these are taken whole from the user's file, because a
# merged recipient list would keep paging the example addresses of the defaults.
REPLACED_WHOLE = {("recipients", "groups")}


def default_config_text() -> str:
    return resources.files("homealert_mqtt").joinpath("defaults/homealert.yaml").read_text("utf-8")


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load, merge and validate; raises ConfigError listing every problem with its key path."""
    env = os.environ if environ is None else environ
    defaults = yaml.safe_load(default_config_text())
    config_dir: Path | None = None
    user: dict[str, Any] = {}
    if path is not None:
        config_path = Path(path)
        config_dir = config_path.resolve().parent
        user = _read_user_file(config_path, env)
    merged = deep_merge(defaults, user)
    if env.get(ENV_MQTT_URL):
        merged.setdefault("mqtt", {})["url"] = env[ENV_MQTT_URL]
    if env.get(ENV_REDIS_URL):
        merged.setdefault("redis", {})["url"] = env[ENV_REDIS_URL]
    return Settings.from_validated(validate(merged), config_dir)


def deep_merge(
    base: dict[str, Any], override: dict[str, Any], path: tuple[str, ...] = ()
) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        here = (*path, str(key))
        if (
            isinstance(value, dict)
            and isinstance(result.get(key), dict)
            and here not in REPLACED_WHOLE
        ):
            result[key] = deep_merge(result[key], value, here)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _read_user_file(path: Path, env: os._Environ[str] | dict[str, str]) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"]) from err
    loader = _make_loader(path.resolve().parent, env)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: invalid YAML: {_yaml_reason(err)}"]) from err
    except _TagError as err:
        raise ConfigError([str(err)]) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping at the top level"])
    return data


class _TagError(Exception):
    pass


def _make_loader(config_dir: Path, env: os._Environ[str] | dict[str, str]) -> type[yaml.SafeLoader]:
    secrets: dict[str, Any] | None = None

    def load_secrets() -> dict[str, Any]:
        nonlocal secrets
        if secrets is None:
            secrets_path = config_dir / SECRETS_FILE
            try:
                loaded = yaml.safe_load(secrets_path.read_text("utf-8"))
            except FileNotFoundError as err:
                raise _TagError(f"!secret: {secrets_path} not found") from err
            except yaml.YAMLError as err:
                raise _TagError(f"{secrets_path}: invalid YAML: {_yaml_reason(err)}") from err
            secrets = loaded if isinstance(loaded, dict) else {}
        return secrets

    def secret(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        name = loader.construct_scalar(node)  # type: ignore[arg-type]
        values = load_secrets()
        if name not in values:
            # Name the secret, never its neighbours' values.
            raise _TagError(f"!secret {name}: not in {config_dir / SECRETS_FILE}")
        return values[name]

    def env_var(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        parts = str(loader.construct_scalar(node)).split(None, 1)  # type: ignore[arg-type]
        if not parts:
            raise _TagError("!env_var needs a variable name")
        if parts[0] in env:
            return env[parts[0]]
        if len(parts) == 2:
            return yaml.safe_load(parts[1])
        raise _TagError(f"!env_var {parts[0]}: not set and no default given")

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!secret", secret)
    Loader.add_constructor("!env_var", env_var)
    return Loader


def _yaml_reason(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)
