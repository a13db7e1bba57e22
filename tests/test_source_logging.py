"""Source errors reach the log: a warning when a source starts failing (machine, source, what
to check), then at most one line per window with a count, and an info line when it recovers;
for Modbus, OPC UA and MQTT, against real dead ports, refusing devices and brokers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pymodbus import FramerType
from pymodbus.server import ModbusTcpServer

from adapters.base import AdapterContext, registry
from api.server import ApiServer
from collector.config import parse_config
from collector.model import BAD, GOOD, SourceHealth
from collector.runtime import Runtime
from tests.kit.modbus import Device, sim_device
from tests.kit.mqtt import Mosquitto, Publisher
from tests.kit.ports import free_port
from tests.kit.sinks import Sink
from tests.kit.waiting import wait_for

SOURCES_LOG = "collector.sources"
FAST = {"interval": "100ms", "timeout": "300ms", "reconnect_delay": "50ms",
        "reconnect_delay_max": "100ms"}


class Running:
    """One adapter of any protocol in its own task, with the sink and health the runtime
    would give it."""

    def __init__(self, source: dict[str, Any], machine: str = "press07"):
        config = parse_config(yaml.safe_dump({"machines": [{"id": machine, "sources": [source]}]}))
        machine_cfg = config.machines[0]
        source_cfg = machine_cfg.sources[0]
        self.sink = Sink()
        self.health = SourceHealth(machine, source_cfg.id, source_cfg.protocol)
        adapter = registry()[source_cfg.protocol].factory(
            AdapterContext(machine_cfg, source_cfg, self.sink, self.health))
        self.task = asyncio.create_task(adapter.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task], timeout=10)


@pytest.fixture
async def run() -> AsyncIterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(source: dict[str, Any]) -> Running:
        started.append(Running(source))
        return started[-1]

    yield start
    for running in started:
        await running.stop()


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == SOURCES_LOG and r.levelno == level]


def modbus(port: int, tags: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": "io", "protocol": "modbus", "host": "127.0.0.1", "port": port,
            "retries": 0, **FAST, "tags": tags}


async def test_a_dead_modbus_port_is_logged_once_then_once_a_window_then_its_recovery(
        run: Callable[..., Running], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=SOURCES_LOG)
    port = free_port()
    source = run(modbus(port, [{"name": "motor_current", "register": "holding", "address": 4}]))
    source.health.failures.every = 1.5  # the window is a minute in service
    await wait_for(lambda: source.health.errors >= 4, what="four failed connection attempts")
    (first,) = lines(caplog, logging.WARNING)
    assert first.startswith(f"machine 'press07' source 'io': cannot connect to 127.0.0.1:{port}; "
                            f"retrying in 0."), first
    assert first.endswith(" s (check power, cable, address and port)"), first
    await wait_for(lambda: len(lines(caplog, logging.WARNING)) == 2, within=5,
                   what="the second warning, one window later")
    second = lines(caplog, logging.WARNING)[1]
    assert second.startswith(f"machine 'press07' source 'io': cannot connect to 127.0.0.1:{port}")
    counted = int(second.rsplit("(", 1)[1].split()[0])
    assert counted >= 5 and second.endswith(" failures in the last 2 s)"), second
    assert lines(caplog, logging.INFO) == []

    device = await Device([sim_device(1)], port=port).start()
    try:
        await device.set("holding", 4, [1234])
        await wait_for(lambda: lines(caplog, logging.INFO), what="the recovery line")
        assert lines(caplog, logging.INFO) == [
            f"machine 'press07' source 'io': recovered after {source.health.errors} failures"]
        await wait_for(lambda: source.sink.of("motor_current")
                       and source.sink.of("motor_current")[-1].quality is GOOD)
        assert source.sink.of("motor_current")[-1].value == 1234
        assert len(lines(caplog, logging.WARNING)) == 2  # recovered: nothing more to say
    finally:
        await device.stop()


async def test_a_refused_register_is_one_warning_and_no_false_recovery(
        run: Callable[..., Running], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=SOURCES_LOG)
    device = await Device([sim_device(1, registers=((0, 10),))]).start()
    try:
        await device.set("holding", 2, [77])
        source = run(modbus(device.port, [
            {"name": "speed", "register": "holding", "address": 2},
            {"name": "pressure", "register": "holding", "address": 50}]))
        await wait_for(lambda: source.health.errors >= 8, what="eight refused reads")
        assert lines(caplog, logging.WARNING) == [
            "machine 'press07' source 'io': unit 1 answered exception 2 (illegal data address) "
            "reading holding 50 (tags pressure); check the tag's address and register kind "
            "against the register map"]
        assert lines(caplog, logging.INFO) == []  # the good block does not make it recovered
        assert source.sink.of("speed")[-1][3:5] == (77, GOOD)
        assert [r.quality for r in source.sink.of("pressure")] == [BAD]
    finally:
        await device.stop()


class GarblingDevice(Device):
    """A pymodbus server whose holding-register answers carry a byte count two more than
    the data that follows (input registers are answered correctly)."""

    async def start(self) -> GarblingDevice:
        def garble(sending: bool, packet: bytes) -> bytes:
            if sending and len(packet) > 8 and packet[7] == 3:
                return packet[:8] + bytes([packet[8] + 2]) + packet[9:]
            return packet

        self.server = ModbusTcpServer(self.devices, address=("127.0.0.1", self.port),
                                      framer=FramerType.SOCKET, trace_packet=garble)
        await self.server.serve_forever(background=True)
        return self


async def test_a_wrong_byte_count_is_a_one_line_error_of_its_source_not_a_traceback(
        run: Callable[..., Running], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # as `collector run` sets it
    device = await GarblingDevice([sim_device(1)]).start()
    try:
        await device.set("input", 0, [215])
        source = run(modbus(device.port, [
            {"name": "mode", "register": "holding", "address": 0},
            {"name": "oil_temp", "register": "input", "address": 0}]))
        await wait_for(lambda: source.health.errors >= 5, what="five garbled answers")
        assert lines(caplog, logging.WARNING) == [
            "machine 'press07' source 'io': unit 1 answered with a frame that cannot be decoded "
            "(its byte count or length is wrong) reading holding 0 (tags mode); check that no "
            "other device answers on this unit id and ask the device's maker whether it "
            "supports reads of this size"]
        noisy = [r for r in caplog.records if r.exc_info or r.name.startswith("asyncio")
                 or "Fatal error" in r.getMessage()]
        assert noisy == []
        assert source.health.connected
        assert source.sink.of("oil_temp")[-1][3:5] == (215, GOOD)
        assert [r.quality for r in source.sink.of("mode")] == [BAD]
    finally:
        await device.stop()


async def test_a_dead_opcua_endpoint_is_logged_once(
        run: Callable[..., Running], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=SOURCES_LOG)
    port = free_port()
    source = run({"id": "hmi", "protocol": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{port}",
                  **FAST, "timeout": "1s",
                  "tags": [{"name": "temperature", "node": "ns=2;s=Press07.Temperature"}]})
    await wait_for(lambda: source.health.errors >= 3, what="three failed connections")
    (warning,) = lines(caplog, logging.WARNING)
    assert warning.startswith("machine press07, source hmi: ")
    assert f"127.0.0.1:{port}" in warning
    assert warning == source.health.last_error


async def test_a_dead_broker_is_logged_once_and_its_recovery(
        run: Callable[..., Running], caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger=SOURCES_LOG)
    port = free_port()
    source = run({"id": "sensors", "protocol": "mqtt", "broker": f"mqtt://127.0.0.1:{port}",
                  "reconnect_delay": "50ms", "reconnect_delay_max": "100ms",
                  "tags": [{"name": "current", "topic": "plant1/press07/current"}]})
    await wait_for(lambda: source.health.errors >= 3, what="three failed connections")
    (warning,) = lines(caplog, logging.WARNING)
    assert warning.startswith("machine 'press07' source 'sensors': ")
    assert warning.endswith(source.health.last_error or "?")
    with Mosquitto(tmp_path / "broker", port=port):
        await wait_for(lambda: source.health.connected, what="the connection")
        errors = source.health.errors
        assert lines(caplog, logging.INFO) == [
            f"machine 'press07' source 'sensors': recovered after {errors} failures"]


async def test_bad_payloads_count_as_source_errors_and_have_a_series_of_their_own(
        tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker, Publisher(broker.port) as publisher:
        cfg = parse_config(yaml.safe_dump({
            "ledger": {"url": f"sqlite:///{tmp_path}/l.db"}, "spool": {"path": f"{tmp_path}/s.db"},
            "api": {"port": 0},
            "machines": [{"id": "press07", "sources": [{
                "id": "sensors", "protocol": "mqtt", "broker": broker.url,
                "tags": [{"name": "current", "topic": "p/current", "json": "a"},
                         {"name": "temp", "topic": "p/temp"}]}]}]}))
        async with Runtime(cfg, api=ApiServer) as rt:
            health = rt.health[0]
            await wait_for(lambda: health.connected, what="the connection")
            for payload in (b"{not json", b'{"b": 1}', b"\xff\xfe", b'{"a": "x"}', b"[1"):
                publisher.publish("p/current", payload)
            publisher.publish("p/current", b'{"a": 4.5}')
            publisher.publish("p/temp", b"x41")
            publisher.publish("p/temp", b"41")
            await wait_for(lambda: health.reads >= 8, what="eight messages")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}") as client:
                text = (await client.get("/metrics")).text
    labels = 'machine="press07",protocol="mqtt",source="sensors"'
    assert f"collector_source_errors_total{{{labels}}} 6.0" in text
    assert f'collector_source_bad_payloads_total{{{labels},tag="current"}} 5.0' in text
    assert f'collector_source_bad_payloads_total{{{labels},tag="temp"}} 1.0' in text
    assert health.last_error is not None and health.last_error.startswith("tag temp: bad payload")
