"""Fixtures: the machine's Mosquitto, brokers of our own stopped in finalisers, a sink."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.base import AdapterContext
from adapters.mqtt.adapter import MqttAdapter
from collector.config import CollectorConfig, parse_config
from collector.model import Reading, SourceHealth
from tests.conftest import wait_for  # noqa: F401  (shared by this folder's tests)

from .peers import SHARED_PORT, Mosquitto, Publisher

SAMPLE = Path(__file__).parent.parent / "sample.yaml"


class Sink:
    """Collects what an adapter hands over; `wait=True` puts can be delayed or made to fail."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.durable_delay = 0.0
        self.waited = 0
        self.durable = asyncio.Event()  # cleared: puts with wait=True never become durable
        self.durable.set()

    async def put(self, readings: Sequence[Reading], *, wait: bool = False) -> None:
        if wait:
            self.waited += 1
            if self.durable_delay:
                await asyncio.sleep(self.durable_delay)
            await self.durable.wait()
        self.readings.extend(readings)

    def of(self, tag: str, machine: str | None = None) -> list[Reading]:
        return [r for r in self.readings if r.tag == tag and (machine is None or r.machine == machine)]




def source(tags: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    return {"id": "sensors", "protocol": "mqtt", "broker": f"mqtt://127.0.0.1:{SHARED_PORT}",
            "client_id": f"test-{uuid.uuid4().hex[:10]}", "reconnect_delay": "100ms",
            "reconnect_delay_max": "1s", "tags": tags, **options}


def config_with(sources: list[dict[str, Any]], machine: str = "m1") -> CollectorConfig:
    return parse_config(yaml.safe_dump({"api": {"enabled": False},
                                        "machines": [{"id": machine, "sources": sources}]}))


class Running:
    """An adapter task with its sink and health."""

    def __init__(self, config: CollectorConfig, sink: Sink | None = None):
        machine = config.machines[0]
        src = machine.sources[0]
        self.sink = sink or Sink()
        self.health = SourceHealth(machine.id, src.id, "mqtt")
        self.adapter = MqttAdapter(AdapterContext(machine, src, self.sink, self.health))
        self.task: asyncio.Task[None] | None = None

    async def start(self, connected: bool = True) -> Running:
        self.task = asyncio.create_task(self.adapter.run())
        if connected:
            await wait_for(lambda: self.health.connected or (self.task is not None and self.task.done()))
            if self.task.done():
                self.task.result()
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def run_adapter() -> AsyncIterator[Callable[..., Any]]:
    started: list[Running] = []

    async def start(config: CollectorConfig, sink: Sink | None = None, connected: bool = True) -> Running:
        running = Running(config, sink)
        started.append(running)
        return await running.start(connected)

    yield start
    for running in started:
        await running.stop()


@pytest.fixture
def prefix() -> str:
    """A topic prefix no other test run uses."""
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    pub = Publisher()
    yield pub
    pub.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Starts Mosquittos of the test's own; each is stopped by PID afterwards."""
    made: list[Mosquitto] = []

    def make(**kwargs: Any) -> Mosquitto:
        m = Mosquitto(tmp_path / f"broker{len(made)}", **kwargs)
        made.append(m)
        return m.start()

    yield make
    for m in made:
        m.stop()
