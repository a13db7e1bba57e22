"""The poller against pymodbus' own TCP server: sample.yaml following the device's changes (its
values are the case tests/cases/modbus/sample), several units, exception responses, and a block
refused as an illegal address split once and remembered."""

from __future__ import annotations

import asyncio

from pymodbus.constants import ExcCodes

from collector.model import BAD, GOOD
from tests.kit.modbus import sim_device
from tests.kit.waiting import wait_for

from .conftest import BAD_TAGS, EXPECTED, config_with, load_sample, sample_source


async def test_sample_follows_changes_and_reports_a_bad_value_once(devices, adapters) -> None:
    # every type and byte order read right: tests/cases/modbus/sample, run by tests/test_cases.py
    device = await devices([sim_device(1)])
    await load_sample(device)
    run = adapters(config_with([sample_source(port=device.port, interval="100ms")]))
    await wait_for(lambda: set(EXPECTED) | BAD_TAGS <= set(run.sink.latest()))
    await wait_for(lambda: run.adapter.scans >= 3)
    assert run.health.connected and run.health.errors == 0
    assert run.health.scan_time is not None and run.health.scan_time < 1.0
    # NaN stays bad without repeating the BAD reading every scan
    assert len(run.sink.of("meter_nan")) == 1 and len(run.sink.of("flow")) == 1
    # a new value on the device shows up on the next scan
    await device.set("input", 0, [0x4366, 0x0000])  # 230.0
    await wait_for(lambda: run.sink.of("voltage_l1")[-1].value == 230.0)
    await device.set("input", 2, [0x3F80, 0x0000])  # NaN -> 1.0: good again
    await wait_for(lambda: run.sink.of("meter_nan")[-1].value == 1.0)
    assert run.sink.of("meter_nan")[-1].quality is GOOD
    await device.set("holding", 101, [12])  # flow: a value again
    await wait_for(lambda: run.sink.of("flow")[-1].value == 12)
    assert run.sink.of("flow")[-1].quality is GOOD


async def test_several_units_on_one_connection(devices, adapters) -> None:
    device = await devices([sim_device(1), sim_device(2)])
    await device.set("holding", 0, [111], unit=1)
    await device.set("holding", 0, [222], unit=2)
    await device.set("holding", 1, [0x4049, 0x0FDB], unit=2)
    source = {"id": "gw", "protocol": "modbus", "host": "127.0.0.1", "port": device.port,
              "interval": "100ms", "tags": [
                  {"name": "a", "address": 0},
                  {"name": "b", "address": 0, "unit_id": 2},
                  {"name": "pi", "address": 1, "type": "float32", "unit_id": 2}]}
    run = adapters(config_with([source]))
    await wait_for(lambda: {"a", "b", "pi"} <= set(run.sink.latest()))
    latest = run.sink.latest()
    assert (latest["a"].value, latest["b"].value) == (111, 222)
    assert latest["pi"].value == 3.1415927  # the shortest decimal of that float32
    assert run.adapter.min_requests == 2


async def test_illegal_address_block_is_split_and_remembered(devices, adapters) -> None:
    # the device has registers 0..9 and 20..29 only; 10..19 answer "illegal data address"
    device = await devices([sim_device(1, registers=((0, 10), (20, 10)))])
    for address in range(10):
        await device.set("holding", address, [address])
        await device.set("holding", 20 + address, [100 + address])
    tags = [{"name": f"r{a}", "address": a} for a in (*range(0, 10, 3), *range(20, 30, 3))]
    source = {"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": device.port,
              "interval": "100ms", "max_gap": 16, "tags": tags}
    run = adapters(config_with([source]))
    assert run.adapter.min_requests == 1  # planned through the hole
    await wait_for(lambda: run.adapter.scans >= 4)
    latest = run.sink.latest()
    assert {t: r.value for t, r in latest.items()} == {
        "r0": 0, "r3": 3, "r6": 6, "r9": 9, "r20": 100, "r23": 103, "r26": 106, "r29": 109}
    assert all(r.quality is GOOD for r in run.sink.readings)  # the split cost no bad reading
    assert run.adapter.splits == 1  # split once, then remembered
    assert run.health.extra["requests_per_scan"] == 2
    assert run.health.errors == 0


async def test_wrong_address_marks_only_that_tag_bad(devices, adapters) -> None:
    device = await devices([sim_device(1, registers=((0, 10),))])
    await device.set("holding", 0, [7, 8])
    source = {"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": device.port,
              "interval": "100ms", "tags": [
                  {"name": "good", "address": 0}, {"name": "good2", "address": 1},
                  {"name": "typo", "address": 12}]}
    run = adapters(config_with([source]))
    await wait_for(lambda: run.adapter.scans >= 4)
    latest = run.sink.latest()
    assert (latest["good"].value, latest["good2"].value) == (7, 8)
    assert (latest["typo"].value, latest["typo"].quality) == (None, BAD)
    assert len(run.sink.of("typo")) == 1  # marked bad once
    assert "exception 2 (illegal data address) reading holding 12 (tags typo)" in run.health.last_error
    assert "machine 'm1' source 'plc'" in run.health.last_error


async def test_exception_responses_mark_the_block_bad(devices, adapters) -> None:
    busy = {"on": True}

    async def busy_at_40(function_code, start_address, address, count, registers, values):
        if busy["on"] and values is None and address <= 40 < address + count:
            return ExcCodes.DEVICE_BUSY
        return None

    sim = sim_device(1)
    sim.action = busy_at_40
    device = await devices([sim])
    await device.set("holding", 0, [5])
    await device.set("holding", 40, [6])
    source = {"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": device.port,
              "interval": "100ms", "max_gap": 0, "tags": [
                  {"name": "ok", "address": 0}, {"name": "busy", "address": 40},
                  {"name": "ghost", "address": 0, "unit_id": 9}]}  # no such unit on this server
    run = adapters(config_with([source]))
    await wait_for(lambda: run.adapter.scans >= 3 and "ghost" in run.sink.latest())
    latest = run.sink.latest()
    assert (latest["ok"].value, latest["ok"].quality) == (5, GOOD)
    assert (latest["busy"].value, latest["busy"].quality) == (None, BAD)
    assert (latest["ghost"].value, latest["ghost"].quality) == (None, BAD)
    assert run.health.errors >= 2 and run.health.connected
    # the device recovers: the tag reads again
    busy["on"] = False
    await wait_for(lambda: run.sink.of("busy")[-1].quality is GOOD, within=15)
    assert run.sink.of("busy")[-1].value == 6


async def test_fixed_rate_without_drift(devices, adapters) -> None:
    async def slow(function_code, start_address, address, count, registers, values):
        await asyncio.sleep(0.03)  # each scan takes 30 ms: a sleep-after-scan loop would drift
        return None

    sim = sim_device(1)
    sim.action = slow
    device = await devices([sim])
    source = {"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": device.port,
              "interval": "100ms", "tags": [{"name": "x", "address": 0}]}
    run = adapters(config_with([source]))
    await wait_for(lambda: len(run.sink.of("x")) >= 21)
    ts = [r.ts for r in run.sink.of("x")][:21]
    # 20 intervals later is 2.0 s later, not 2.6 s: scan time does not add up
    assert abs((ts[20] - ts[0]) / 1e6 - 2.0) < 0.15
    assert run.adapter.overruns == 0


async def test_overruns_are_counted(devices, adapters) -> None:
    async def slow(function_code, start_address, address, count, registers, values):
        await asyncio.sleep(0.15)
        return None

    sim = sim_device(1)
    sim.action = slow
    device = await devices([sim])
    source = {"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": device.port,
              "interval": "50ms", "timeout": "1s", "tags": [{"name": "x", "address": 0}]}
    run = adapters(config_with([source]))
    await wait_for(lambda: run.adapter.scans >= 4)
    assert run.adapter.overruns >= 6  # each 150 ms scan misses two 50 ms ticks
    assert run.health.extra["overruns"] == run.adapter.overruns
