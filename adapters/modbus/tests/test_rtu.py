"""Modbus RTU end to end: over a socat pty pair with pymodbus' serial server on the other
end, several units sharing one bus, and RTU framing over TCP as a serial gateway speaks it."""

from __future__ import annotations

from pymodbus import FramerType

from collector.model import BAD, GOOD
from tests.kit.cases import same
from tests.kit.modbus import sim_device
from tests.kit.waiting import wait_for

from .conftest import BAD_TAGS, EXPECTED, SAMPLE_REQUESTS, config_with, load_sample, sample_source


def check_golden(latest: dict) -> None:
    wrong = {name: (latest[name].value, value) for name, value in EXPECTED.items()
             if not same(latest[name].value, value) or latest[name].quality is not GOOD}
    assert wrong == {}
    assert all(latest[name].quality is BAD for name in BAD_TAGS)


async def test_every_type_and_order_over_serial(pty_pair, devices, adapters) -> None:
    device = await devices([sim_device(1)], serial=pty_pair.a, framer=FramerType.RTU)
    await load_sample(device)
    source = sample_source(host=None, port=None, serial=pty_pair.b, baudrate=115200,
                           parity="N", stopbits=1, bytesize=8, interval="200ms")
    run = adapters(config_with([source]))
    await wait_for(lambda: set(EXPECTED) | BAD_TAGS <= set(run.sink.latest()), within=15)
    check_golden(run.sink.latest())
    await wait_for(lambda: run.adapter.scans >= 3)
    assert run.health.extra["requests_per_scan"] == SAMPLE_REQUESTS
    assert run.health.errors == 0


async def test_two_sources_share_one_bus(pty_pair, devices, adapters) -> None:
    device = await devices([sim_device(3), sim_device(7)], serial=pty_pair.a,
                           framer=FramerType.RTU)
    await device.set("holding", 0, [0x0303], unit=3)
    await device.set("holding", 0, [0x0707], unit=7)
    line = {"protocol": "modbus", "serial": pty_pair.b, "baudrate": 115200, "interval": "50ms"}
    meter = {**line, "id": "meter", "unit": 3, "tags": [{"name": "a", "address": 0}]}
    counter = {**line, "id": "counter", "unit": 7, "tags": [{"name": "b", "address": 0}]}
    config = config_with([meter, counter])
    run_a, run_b = adapters(config, 0), adapters(config, 1)
    await wait_for(lambda: len(run_a.sink.of("a")) >= 10 and len(run_b.sink.of("b")) >= 10,
                   within=15)
    assert run_a.adapter.link is run_b.adapter.link  # one port, opened once
    assert {r.value for r in run_a.sink.of("a")} == {0x0303}
    assert {r.value for r in run_b.sink.of("b")} == {0x0707}
    assert run_a.health.errors == 0 and run_b.health.errors == 0


async def test_conflicting_line_settings_are_reported(pty_pair, adapters) -> None:
    line = {"protocol": "modbus", "serial": pty_pair.b, "interval": "100ms",
            "tags": [{"name": "a", "address": 0}]}
    config = config_with([{**line, "id": "one", "baudrate": 9600},
                          {**line, "id": "two", "baudrate": 19200,
                           "tags": [{"name": "b", "address": 0}]}])
    first = adapters(config, 0)
    await wait_for(lambda: first.adapter.link is not None)
    second = adapters(config, 1)
    await wait_for(lambda: second.health.last_error is not None)
    assert "source 'two' shares" in second.health.last_error
    assert "sets baudrate differently" in second.health.last_error


async def test_rtu_over_tcp_gateway(devices, adapters) -> None:
    device = await devices([sim_device(1)], framer=FramerType.RTU)
    await load_sample(device)
    run = adapters(config_with([sample_source(port=device.port, framer="rtu",
                                              interval="100ms")]))
    await wait_for(lambda: set(EXPECTED) | BAD_TAGS <= set(run.sink.latest()))
    check_golden(run.sink.latest())
