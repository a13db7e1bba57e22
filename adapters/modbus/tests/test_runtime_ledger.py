"""End to end through `Runtime` into a SQLite ledger: sample.yaml against pymodbus' server
(TCP and RTU over a pty pair), and a device outage leaving a visible gap in the ledger."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import yaml
from pymodbus import FramerType

from collector.config import parse_config
from collector.ledger import PageQuery
from collector.model import BAD, GOOD
from collector.runtime import Runtime
from tests.kit.modbus import sim_device
from tests.kit.waiting import wait_for

from .conftest import BAD_TAGS, EXPECTED, SAMPLE, load_sample, sample_source


def runtime_config(tmp_path: Path, source: dict) -> str:
    data = yaml.safe_load(SAMPLE.read_text())
    data["ledger"] = {"url": f"sqlite:///{tmp_path}/ledger.db"}
    data["spool"] = {"path": str(tmp_path / "spool.db")}
    data["pipeline"] = {"flush_interval": "50ms"}
    data["api"] = {"enabled": False}
    data["machines"][0]["sources"] = [source]
    return yaml.safe_dump(data)


def as_stored(value: object) -> object:
    """The ledger keeps numbers as 64-bit floats (and bools and text as they are)."""
    if isinstance(value, bool | str):
        return value
    return float(value)  # type: ignore[arg-type]


async def latest_in_ledger(rt: Runtime) -> dict[str, tuple[object, object]]:
    await rt.pipeline.flush()
    return {series.tag: (point.value, point.quality) for series, point in
            await rt.ledger.latest.of_machine("sample")}


async def assert_golden(rt: Runtime) -> None:
    stored: dict[str, tuple[object, object]] = {}

    async def poll() -> bool:
        stored.update(await latest_in_ledger(rt))
        return set(EXPECTED) | BAD_TAGS <= set(stored)

    for _ in range(300):
        if await poll():
            break
        await asyncio.sleep(0.05)
    wrong = {}
    for name, value in EXPECTED.items():
        got, quality = stored[name]
        want = as_stored(value)
        ok = quality == GOOD and (
            # SQLite stores -0.0 as 0.0, so the sign of zero is checked in the adapter tests
            math.isclose(got, want, rel_tol=1e-12)  # type: ignore[arg-type]
            if isinstance(want, float) else got == want)
        if not ok:
            wrong[name] = (got, quality, want)
    assert wrong == {}
    assert {name: stored[name] for name in BAD_TAGS} == {name: (None, BAD) for name in BAD_TAGS}


async def test_sample_over_tcp_into_the_ledger(tmp_path, devices) -> None:
    device = await devices([sim_device(1)])
    await load_sample(device)
    text = runtime_config(tmp_path, sample_source(port=device.port, interval="200ms"))
    async with Runtime(parse_config(text)) as rt:
        await assert_golden(rt)
        health = rt.health_of("sample", "plc")
        assert health.connected and health.errors == 0
        assert health.extra["requests_per_scan"] == health.extra["min_requests"] == 5


async def test_sample_over_rtu_into_the_ledger(tmp_path, pty_pair, devices) -> None:
    device = await devices([sim_device(1)], serial=pty_pair.a, framer=FramerType.RTU)
    await load_sample(device)
    source = sample_source(host=None, port=None, serial=pty_pair.b, baudrate=115200,
                           interval="200ms")
    async with Runtime(parse_config(runtime_config(tmp_path, source))) as rt:
        await assert_golden(rt)


async def test_outage_leaves_a_gap_in_the_ledger(tmp_path, devices) -> None:
    device = await devices([sim_device(1)])
    await device.set("holding", 0, [5])
    source = {"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": device.port,
              "interval": "100ms", "timeout": "300ms", "retries": 0,
              "reconnect_delay": "100ms", "reconnect_delay_max": "300ms",
              "tags": [{"name": "count", "address": 0}]}
    async with Runtime(parse_config(runtime_config(tmp_path, source))) as rt:
        (series,) = await rt.ledger.catalogue.find("sample", ["count"])

        async def history() -> list:
            await rt.pipeline.flush()
            return [p async for p in rt.ledger.pages.points(PageQuery.of([series], 0, 2**62, 10_000))]

        async def wait_history(check) -> list:
            for _ in range(300):
                points = await history()
                if check(points):
                    return points
                await asyncio.sleep(0.05)
            raise AssertionError("ledger never showed the expected history")

        await wait_history(lambda p: len(p) >= 3)
        await device.stop()
        await wait_history(lambda p: p[-1].quality == BAD)
        await asyncio.sleep(0.8)
        await device.set("holding", 0, [6])
        await device.start()
        points = await wait_history(lambda p: p[-1].quality == GOOD and p[-1].value == 6)
        qualities = [p.quality for p in points]
        assert qualities.count(BAD) == 1  # one BAD row marks the gap
        gap = qualities.index(BAD)
        assert points[gap].value is None
        assert {p.value for p in points[:gap]} == {5}
        assert points[gap + 1].ts - points[gap].ts >= 700_000  # nothing stored while down
        health = rt.health_of("sample", "plc")
        connects = health.extra["connects"]
        assert health.connected and isinstance(connects, int) and connects >= 2


async def test_first_scan_reaches_the_ledger(tmp_path, devices) -> None:
    """The first scan is stored without waiting for a second one."""
    device = await devices([sim_device(1)])
    source = {"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": device.port,
              "interval": "1s", "tags": [{"name": "count", "address": 0}]}
    async with Runtime(parse_config(runtime_config(tmp_path, source))) as rt:
        await wait_for(lambda: rt.health_of("sample", "plc").reads >= 1)
        assert (await latest_in_ledger(rt))["count"] == (0, GOOD)
