"""End to end: the sample config's OPC UA source through Runtime into a SQLite ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from asyncua import ua

from collector.config import parse_config
from collector.ledger import PageQuery
from collector.model import BAD, GOOD, now_us
from collector.runtime import Runtime
from tests.kit.waiting import wait_for

from .press07 import press07_server

SAMPLE = Path(__file__).parents[1] / "sample.yaml"


def sample_config(url: str, tmp_path: Path, **source_options: object):
    """sample.yaml pointed at the test server and a ledger in tmp_path."""
    data = yaml.safe_load(SAMPLE.read_text())
    data["ledger"] = {"url": f"sqlite:///{tmp_path}/ledger.db"}
    data["spool"] = {"path": str(tmp_path / "spool.db")}
    data["api"] = {"enabled": False}
    data["pipeline"] = {"flush_interval": "100ms"}
    source = data["machines"][0]["sources"][0]
    source["endpoint"] = url
    source.pop("certificate", None), source.pop("private_key", None)
    source.update(source_options)
    return parse_config(yaml.safe_dump(data), base_dir=str(tmp_path))


async def ledger_points(rt: Runtime, machine: str, tag: str):
    series = await rt.ledger.catalogue.find(machine, [tag])
    return [p async for p in rt.ledger.pages.points(PageQuery.of(series, 0, now_us() + 10**9, 10_000))]


async def test_sample_config_subscribes_into_the_ledger(opc_server, tmp_path: Path) -> None:
    config = sample_config(opc_server.url, tmp_path)
    async with Runtime(config) as rt:
        health = rt.health_of("press07", "hmi")
        await wait_for(lambda: health.connected and health.readings >= 5, what="the source to connect")
        for value in (11, 12, 13):
            await opc_server.write("Counter", value, ua.VariantType.Int32)
            await asyncio.sleep(0.2)
        await wait_for(lambda: health.readings >= 8, what="the three changes")
        await rt.pipeline.flush()
        points = await ledger_points(rt, "press07", "strokes")
        assert [p.value for p in points][-3:] == [11, 12, 13]
        latest = {s.tag: p for s, p in await rt.ledger.latest.of_machine("press07")}
        assert latest["temperature"].value == 20.5 and latest["temperature"].quality is GOOD
        assert latest["mode"].value == "running"
        assert latest["die_level"].value == 20
        assert latest["door_open"].value is True
        assert latest["sensor_b"].quality is BAD and latest["sensor_b"].value is None


def run_value(health) -> bool:
    return health.connected and health.readings >= 13  # 6 before, 6 after the restart, 1 change


async def test_outage_is_a_gap_in_the_ledger(tmp_path: Path) -> None:
    srv = press07_server()
    srv.start()
    try:
        config = sample_config(srv.url, tmp_path, reconnect_delay_max="1s", timeout="2s")
        async with Runtime(config) as rt:
            health = rt.health_of("press07", "hmi")
            await wait_for(lambda: health.readings >= 6, what="a first value of every tag")
            await asyncio.to_thread(srv.stop)
            await wait_for(lambda: not health.connected, what="the loss")
            await asyncio.sleep(2)
            await asyncio.to_thread(srv.start)
            await wait_for(lambda: health.connected, 20, "reconnected")
            await srv.write("Counter", 99, ua.VariantType.Int32)
            await wait_for(lambda: run_value(health), what="data")
            await asyncio.sleep(0.5)
            await rt.pipeline.flush()
            points = await ledger_points(rt, "press07", "temperature")
            assert [p.quality for p in points] == [GOOD, BAD, GOOD], points
            strokes = await ledger_points(rt, "press07", "strokes")
            assert strokes[-1].value == 99 and strokes[-1].quality is GOOD
    finally:
        srv.close()
