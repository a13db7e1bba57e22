"""OPC UA adapter: subscriptions or polling of an OPC UA server's variables (asyncua)."""

from typing import TYPE_CHECKING

from adapters.base import AdapterContext, AdapterSpec, register

from .command import add_cli
from .config import OpcUaSourceConfig, OpcUaTagConfig
from .explain import explain_tag

if TYPE_CHECKING:
    from .adapter import OpcUaAdapter


def _factory(ctx: AdapterContext) -> "OpcUaAdapter":
    from .adapter import OpcUaAdapter

    return OpcUaAdapter(ctx)


SPEC = AdapterSpec(protocol="opcua", config_model=OpcUaSourceConfig, factory=_factory, add_cli=add_cli,
                   explain=explain_tag)
register(SPEC)

__all__ = ["SPEC", "OpcUaSourceConfig", "OpcUaTagConfig"]
