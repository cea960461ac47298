"""The two MQTT connections: one that receives (persistent session), one that publishes."""
