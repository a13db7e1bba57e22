"""Fixtures: the kit's asyncua server holding Press07 (press07.py), shared by a module, and an
OPC UA adapter run into the kit's sink for the duration of an `async with`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kit.opcua import OpcServer
from tests.kit.sinks import Sink

from .press07 import press07_server


@pytest.fixture(scope="module")
def opc_server() -> Iterator[OpcServer]:
    srv = press07_server().start()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _quiet_asyncua() -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)


def source_config(url: str, tags: list[dict[str, Any]], **options: Any) -> Any:
    from adapters.opcua.config import OpcUaSourceConfig

    data = {"id": "hmi", "protocol": "opcua", "endpoint": url, "interval": "100ms", "tags": tags}
    data.update(options)
    return OpcUaSourceConfig.model_validate(data)


class Running:
    """Runs an OpcUaAdapter in a task for the duration of an `async with`."""

    def __init__(self, source: Any, machine: str = "press07"):
        from adapters.base import AdapterContext
        from adapters.opcua.adapter import OpcUaAdapter
        from collector.config import MachineConfig
        from collector.model import SourceHealth

        self.sink = Sink()
        self.health = SourceHealth(machine, source.id, "opcua")
        self.ctx = AdapterContext(MachineConfig(id=machine), source, self.sink, self.health)
        self.adapter = OpcUaAdapter(self.ctx)
        self.task: asyncio.Task[None] | None = None

    @property
    def last_error(self) -> str:
        """The source's last error (fails the test when there is none)."""
        error = self.health.last_error
        assert error is not None, "no error reported"
        return error

    def per_tag(self, detail: str) -> dict[str, str]:
        """A per-tag detail of the source's health: `tag_status` or `tag_errors`."""
        found = self.health.extra.get(detail, {})
        assert isinstance(found, dict), found
        return found

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.adapter.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        if self.task.done() and not self.task.cancelled() and self.task.exception():
            raise self.task.exception()  # type: ignore[misc]
        self.task.cancel()
        try:
            await asyncio.wait_for(self.task, 10)
        except asyncio.CancelledError:
            pass
