"""MQTT: sensors that publish to a broker; topic templates, JSON paths, ack after commit, watch tool."""

from adapters.base import AdapterSpec, register

from .adapter import create_adapter
from .config import MqttSourceConfig

SPEC = AdapterSpec("mqtt", MqttSourceConfig, create_adapter, None)
register(SPEC)
