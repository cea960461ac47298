"""homealert-mqtt: an MQTT-native alert manager for the home."""

__version__ = "0.1.0"
