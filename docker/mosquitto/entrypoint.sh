#!/bin/sh
# Builds the broker's password file at every start, then runs the image's own
# entrypoint. Nothing secret is committed: the passwords come from the environment
# (docker/.env), and the file is written inside the container only.
#
#   user homealert      password $HOMEALERT_MQTT_PASSWORD      (required)
#   user homeassistant  password $HOMEASSISTANT_MQTT_PASSWORD  (when set)
#   any users in /mosquitto/config/passwd (docker/mosquitto/passwd, optional),
#   already hashed by mosquitto_passwd.
set -eu

pwfile=/mosquitto/auth/passwd

if [ -z "${HOMEALERT_MQTT_PASSWORD:-}" ]; then
    echo "entrypoint: HOMEALERT_MQTT_PASSWORD is not set (docker/.env)" >&2
    exit 1
fi

mkdir -p "$(dirname "$pwfile")"
rm -f "$pwfile"
touch "$pwfile"

if [ -f /mosquitto/config/passwd ]; then
    # Drop comments and blank lines; mosquitto reads `user:hash` lines only.
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' /mosquitto/config/passwd >> "$pwfile" || true
fi

mosquitto_passwd -b "$pwfile" homealert "$HOMEALERT_MQTT_PASSWORD"
if [ -n "${HOMEASSISTANT_MQTT_PASSWORD:-}" ]; then
    mosquitto_passwd -b "$pwfile" homeassistant "$HOMEASSISTANT_MQTT_PASSWORD"
fi

# Mosquitto 2 wants the file private to its user.
chmod 0700 "$pwfile"
chown -R mosquitto:mosquitto "$(dirname "$pwfile")"

exec /docker-entrypoint.sh "$@"
