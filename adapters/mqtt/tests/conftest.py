"""Fixtures: the machine's Mosquitto, the kit's brokers of our own stopped in finalisers, and
adapters run into the kit's sink."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.base import AdapterContext
from adapters.mqtt.adapter import MqttAdapter
from collector.config import CollectorConfig, parse_config
from collector.model import SourceHealth
from tests.kit.mqtt import SHARED_PORT, Mosquitto, Publisher
from tests.kit.sinks import Sink
from tests.kit.waiting import wait_for

SAMPLE = Path(__file__).resolve().parents[1] / "sample.yaml"


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
            # bounded: an adapter whose stop hangs (seen once, after its TLS broker was stopped
            # first) is reported as a warning instead of holding the whole test run
            done, _ = await asyncio.wait({self.task}, timeout=STOP_SECONDS)
            if not done:
                warnings.warn(f"MQTT adapter did not stop within {STOP_SECONDS} s of being "
                              "cancelled", RuntimeWarning, stacklevel=1)
            elif not self.task.cancelled():
                self.task.exception()  # retrieved: a failure on the way out is not logged as lost


STOP_SECONDS = 20.0


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
