"""MQTT: sensors that publish to a broker; topic templates, JSON paths, ack after commit, watch tool."""

from typing import TYPE_CHECKING

from adapters.base import AdapterContext, AdapterSpec, register

from .command import add_cli
from .config import MqttSourceConfig
from .explain import explain_tag

if TYPE_CHECKING:
    from .adapter import MqttAdapter


def _factory(ctx: AdapterContext) -> "MqttAdapter":
    from .adapter import MqttAdapter  # the MQTT client is loaded only for MQTT sources

    return MqttAdapter(ctx)


SPEC = AdapterSpec("mqtt", MqttSourceConfig, _factory, add_cli, explain_tag)
register(SPEC)
