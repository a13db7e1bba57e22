#!/bin/sh
# Adds (or updates) the collector's login in the broker's password file, then runs the broker.
# Logins added by hand for sensors are kept: the file lives in the mosquitto-data volume.
set -eu
: "${MQTT_USERNAME:?MQTT_USERNAME is not set}"
: "${MQTT_PASSWORD:?MQTT_PASSWORD is not set}"
passwd=/mosquitto/data/passwd
mkdir -p /mosquitto/data
if [ ! -f "$passwd" ]; then
    (umask 077 && : > "$passwd")
fi
mosquitto_passwd -b "$passwd" "$MQTT_USERNAME" "$MQTT_PASSWORD"
chown -R mosquitto:mosquitto /mosquitto/data
chmod 0600 "$passwd"
exec mosquitto -c /mosquitto/config/mosquitto.conf
