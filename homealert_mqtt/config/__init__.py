"""Configuration: YAML loading, validation with key paths, and typed settings."""

from homealert_mqtt.config.errors import ConfigError
from homealert_mqtt.config.loader import load_config
from homealert_mqtt.config.settings import Settings

__all__ = ["ConfigError", "Settings", "load_config"]
