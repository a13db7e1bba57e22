"""MQTT: sensors that publish to a broker; topic templates, JSON paths, ack after commit, watch tool."""

from adapters.base import AdapterSpec, register

from .adapter import create_adapter
from .config import MqttSourceConfig
from .explain import explain_tag
from .watch import add_cli

SPEC = AdapterSpec("mqtt", MqttSourceConfig, create_adapter, add_cli, explain_tag)
register(SPEC)
