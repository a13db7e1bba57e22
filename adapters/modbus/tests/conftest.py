"""Fixtures: real Modbus peers stopped in finalisers, and a sink that keeps readings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import yaml

from adapters.base import AdapterContext
from adapters.modbus.adapter import ModbusAdapter
from collector.config import CollectorConfig, parse_config
from collector.model import Reading, SourceHealth
from tests.conftest import wait_for  # noqa: F401  (shared by this folder's tests)

from .golden import SAMPLE
from .peers import Device, PtyPair, SilentDevice


class Sink:
    """Collects what an adapter hands over, like the pipeline would."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.batches = 0

    async def put(self, readings: Sequence[Reading], *, wait: bool = False) -> None:
        self.readings.extend(readings)
        self.batches += 1

    def of(self, tag: str) -> list[Reading]:
        return [r for r in self.readings if r.tag == tag]

    def latest(self) -> dict[str, Reading]:
        return {r.tag: r for r in self.readings}




def config_with(sources: list[dict[str, Any]], machine: str = "m1") -> CollectorConfig:
    text = yaml.safe_dump({"api": {"enabled": False},
                           "machines": [{"id": machine, "sources": sources}]})
    return parse_config(text)


def sample_source(**override: Any) -> dict[str, Any]:
    """The sample.yaml source with connection settings replaced."""
    data = yaml.safe_load(SAMPLE.read_text())
    source = data["machines"][0]["sources"][0]
    source.update(override)
    return {k: v for k, v in source.items() if v is not None}


class Running:
    """An adapter task with its sink and health."""

    def __init__(self, config: CollectorConfig, index: int = 0):
        machine = config.machines[0]
        source = machine.sources[index]
        self.sink = Sink()
        self.health = SourceHealth(machine.id, source.id, "modbus")
        self.adapter = ModbusAdapter(AdapterContext(machine, source, self.sink, self.health))
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Running:
        self.task = asyncio.create_task(self.adapter.run())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            done, _ = await asyncio.wait([self.task], timeout=10)
            assert done, "the adapter ignored its cancellation"


@pytest.fixture
async def devices() -> AsyncIterator[Callable[..., Any]]:
    """Start pymodbus servers: `await devices([sim_device(1)], ...)`; all stopped after."""
    started: list[Device] = []

    async def start(sims: list[Any], **kw: Any) -> Device:
        device = Device(sims, **kw)
        started.append(device)
        return await device.start()

    yield start
    for device in started:
        await device.stop()


@pytest.fixture
async def silent() -> AsyncIterator[SilentDevice]:
    device = await SilentDevice().start()
    yield device
    await device.stop()


@pytest.fixture
async def pty_pair(tmp_path: Any) -> AsyncIterator[PtyPair]:
    pair = PtyPair(tmp_path).start()
    yield pair
    pair.stop()


@pytest.fixture
async def adapters() -> AsyncIterator[Callable[..., Running]]:
    """Run adapters: `adapters(config, index)`; all cancelled after the test."""
    running: list[Running] = []

    def start(config: CollectorConfig, index: int = 0) -> Running:
        run = Running(config, index).start()
        running.append(run)
        return run

    yield start
    for run in running:
        await run.stop()
