"""Modbus TCP, RTU (serial) and RTU over TCP: config, codec, request planner, poller, scan tool."""

from adapters.base import AdapterSpec, register

from .adapter import create_adapter
from .config import ModbusSourceConfig
from .explain import explain_tag
from .scan import add_cli

SPEC = AdapterSpec("modbus", ModbusSourceConfig, create_adapter, add_cli, explain_tag)
register(SPEC)
