"""The adapter protocol and the registry of adapters by protocol name.

An adapter knows one protocol and nothing about SQL or HTTP. Each protocol is a sub-package of
`adapters/` whose `__init__` calls `register(AdapterSpec(...))`; `registry()` imports every
sub-package once, so adding a protocol means adding a folder, not editing a switch statement.
Registering hands the protocol's source model to `collector.config`, which validates `sources`
entries with the models it has been given (load the registry before parsing a config).

The runtime gives each source an `AdapterContext` and calls `await adapter.run()` in its own
task; `run` polls or subscribes until it is cancelled. An exception escaping `run` is logged
and the runtime restarts the adapter with backoff.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from collector.config import MachineConfig, SourceConfig, accept_source_model
from collector.model import Reading, SourceHealth


class ReadingSink(Protocol):
    """Where an adapter hands its readings: the pipeline."""

    async def put(self, readings: Sequence[Reading], *, wait: bool = False) -> None:
        """Queue readings. With `wait=True`, return only once they are durable (in the ledger
        or the spool); an MQTT adapter acknowledges QoS 1 messages after that."""
        ...


@dataclass
class AdapterContext:
    machine: MachineConfig
    source: SourceConfig
    sink: ReadingSink
    health: SourceHealth


class Adapter(Protocol):
    async def run(self) -> None:
        """Read the source until cancelled; report through `context.health`."""
        ...


@dataclass(frozen=True)
class AdapterSpec:
    protocol: str
    config_model: type[SourceConfig]
    factory: Callable[[AdapterContext], Adapter]
    # adds the protocol's commissioning command(s) to `collector`; each sub-parser sets
    # `func=handler` where `handler(args) -> int` returns the exit code
    add_cli: Callable[[argparse._SubParsersAction], None] | None = None
    # `collector check --explain`: plain sentences on what a tag of this protocol reads,
    # `explain(source, tag) -> lines`
    explain: Callable[[SourceConfig, object], list[str]] | None = None


_REGISTRY: dict[str, AdapterSpec] = {}
_LOADED = False


def register(spec: AdapterSpec) -> None:
    existing = _REGISTRY.get(spec.protocol)
    if existing is not None and existing is not spec:
        raise RuntimeError(f"protocol {spec.protocol!r} registered twice")
    _REGISTRY[spec.protocol] = spec
    accept_source_model(spec.protocol, spec.config_model)


def registry() -> dict[str, AdapterSpec]:
    """Every available adapter by protocol name, importing the adapter packages on first use."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        import adapters

        for info in pkgutil.iter_modules(adapters.__path__):
            if info.ispkg:
                try:
                    importlib.import_module(f"adapters.{info.name}")
                except Exception as exc:  # one broken adapter must not take the others down
                    logging.getLogger("adapters").error(
                        "adapter package %r could not be loaded: %s", info.name, exc)
    return _REGISTRY
