"""Fixtures: the kit's Modbus peers stopped in finalisers, adapters run into the kit's sink, and
the sample case (tests/cases/modbus/sample: what the device behind sample.yaml holds)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.base import AdapterContext
from adapters.modbus.adapter import ModbusAdapter
from collector.config import CollectorConfig, parse_config
from collector.model import BAD, SourceHealth
from tests.kit.cases import load_case
from tests.kit.modbus import Device, PtyPair, SilentDevice, memory_of
from tests.kit.sinks import Sink

SAMPLE = Path(__file__).resolve().parents[1] / "sample.yaml"
SAMPLE_CASE = load_case("modbus/sample")
EXPECTED = SAMPLE_CASE.values()  # good values by tag
BAD_TAGS = SAMPLE_CASE.tags(BAD)  # NaN and infinity from the meter, flow's nan_value
SAMPLE_REQUESTS = SAMPLE_CASE.health["requests_per_scan"]


async def load_sample(device: Device, unit: int = 1) -> None:
    """Write what the device behind sample.yaml holds into `device`."""
    await device.load(memory_of(SAMPLE_CASE.device), unit=unit)


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
