"""The data-driven cases in tests/cases/: each case's config run against a real peer serving
its device.yaml, the readings compared with expected.json, or the error with error.txt."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.base import AdapterContext, registry
from collector.config import CollectorConfig, ConfigError, load_config, parse_config
from collector.model import SourceHealth
from tests.kit.cases import (
    Case,
    all_cases,
    health_mismatches,
    mismatches_in_order,
    mismatches_latest,
    missing_errors,
)
from tests.kit.modbus import Device, memory_of, sim_device
from tests.kit.mqtt import Mosquitto, Publisher
from tests.kit.opcua import OpcServer, nodes_of
from tests.kit.sinks import Sink
from tests.kit.waiting import wait_for

CASES = all_cases()


class Sources:
    """Every source of a config run by its adapter into one sink, cancelled on exit."""

    def __init__(self, config: CollectorConfig):
        self.sink = Sink()
        self.health: list[SourceHealth] = []
        self.tasks: list[asyncio.Task[None]] = []
        for machine in config.machines:
            for source in machine.sources:
                health = SourceHealth(machine.id, source.id, source.protocol)
                adapter = registry()[source.protocol].factory(
                    AdapterContext(machine, source, self.sink, health))
                self.health.append(health)
                self.tasks.append(asyncio.create_task(adapter.run()))

    def errors(self) -> str:
        """Every error the sources report, the source's and each tag's, a line each."""
        lines = [h.last_error or "" for h in self.health]
        for h in self.health:
            lines += [str(e) for e in h.extra.get("tag_errors", {}).values()]
        return "\n".join(line for line in lines if line)

    def extra(self) -> dict[str, Any]:
        return {k: v for h in self.health for k, v in h.extra.items()}

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        done, _ = await asyncio.wait(self.tasks, timeout=10)
        assert len(done) == len(self.tasks), "an adapter ignored its cancellation"
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


def pointed(case: Case, **connection: Any) -> CollectorConfig:
    """The case's config with every source's connection settings replaced by the peer's."""
    data = case.config_data()
    data.pop("ledger", None)
    data["api"] = {"enabled": False}
    for machine in data["machines"]:
        for source in machine["sources"]:
            source.update(connection)
    return parse_config(yaml.safe_dump(data), base_dir=str(case.path))


# --- one peer per protocol, serving the case's device.yaml ---------------------------------

@asynccontextmanager
async def modbus_peer(case: Case, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    ranges = case.device.get("ranges", {})
    device = Device([sim_device(1, **{k: [tuple(r) for r in v] for k, v in ranges.items()})])
    async with device:
        await device.load(memory_of(case.device))
        yield {"host": "127.0.0.1", "port": device.port, "interval": "100ms"}


@asynccontextmanager
async def mqtt_peer(case: Case, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    with Mosquitto(tmp_path / "broker") as broker:
        yield {"broker": broker.url, "client_id": f"case-{uuid.uuid4().hex[:10]}"}


@asynccontextmanager
async def opcua_peer(case: Case, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    server = OpcServer(nodes_of(case.device))
    await asyncio.to_thread(server.start)
    try:
        yield {"endpoint": server.url, "interval": "100ms"}
    finally:
        await asyncio.to_thread(server.close)


PEERS: dict[str, Callable[[Case, Path], Any]] = {
    "modbus": modbus_peer, "mqtt": mqtt_peer, "opcua": opcua_peer}


async def publish(case: Case, broker_url: str) -> None:
    """Publish the case's messages (device.yaml `messages`) from a client of its own."""
    port = int(broker_url.rsplit(":", 1)[1])
    with Publisher(port) as publisher:
        for message in case.device.get("messages", []):
            if "json" in message:
                payload = json.dumps(message["json"])
            else:
                payload = str(message["payload"]) * int(message.get("repeat", 1))
            await asyncio.to_thread(publisher.publish, message["topic"], payload)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_case(case: Case, tmp_path: Path) -> None:
    if case.error:
        try:
            load_config(case.config_file)
        except ConfigError as exc:
            assert missing_errors(str(exc), case.error) == [], str(exc)
            return
    async with AsyncExitStack() as stack:
        connection = await stack.enter_async_context(PEERS[case.protocol](case, tmp_path))
        sources = Sources(pointed(case, **connection))
        stack.push_async_callback(sources.stop)
        sink = sources.sink
        if case.error:
            await wait_for(lambda: not missing_errors(sources.errors(), case.error),
                           what=f"errors {case.error}")
            return
        if case.protocol == "mqtt":  # messages: each expected reading once, in order
            await wait_for(lambda: all(h.connected for h in sources.health), what="connected")
            await publish(case, connection["broker"])
            await wait_for(lambda: len(sink.readings) >= len(case.expected), what="the readings")
            await asyncio.sleep(0.2)  # and no more than those
            assert mismatches_in_order(sink.readings, case.expected) == []
        else:  # polled or subscribed state: the newest reading of every tag
            keys = {e.key for e in case.expected}
            await wait_for(lambda: keys <= {(r.machine, r.tag) for r in sink.readings},
                           what="a reading of every tag")
            assert mismatches_latest(sink.readings, case.expected) == []
        if case.health:
            with contextlib.suppress(AssertionError):  # the assert below says what differs
                await wait_for(lambda: not health_mismatches(sources.extra(), case.health), 5)
            assert health_mismatches(sources.extra(), case.health) == []
