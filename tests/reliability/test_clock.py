"""Clock steps without touching the machine's clock: the collector takes wall time only through
`time.time_ns` (collector.model.now_us and the MQTT adapter), so the test steps that in-process
(back an hour, forward two) while schedules run on the monotonic clock. Polling keeps its
rate across the steps, the ledger keeps every reading with the stamp it was given, and a
reading stamped further ahead than `pipeline.future_margin` is stored as uncertain and counted
in health, metrics and the log, not passed off as a good newest value."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from collector.config import parse_config
from collector.model import now_us
from collector.runtime import Runtime
from tests.kit.collector import metric
from tests.kit.modbus import Device, sim_device
from tests.kit.mqtt import SHARED_PORT, Publisher
from tests.kit.waiting import wait_for
from tests.reliability.conftest import record

HOUR_NS = 3_600 * 10**9
PHASE_S = 1.5
INTERVAL_S = 0.1


def config(tmp_path: Path, port: int, topic: str) -> str:
    return f"""
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
spool: {{path: {tmp_path}/spool.db}}
pipeline: {{flush_interval: 100ms, future_margin: 30s}}
api: {{enabled: false}}
machines:
  - id: press
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: {port}
        interval: 100ms
        tags:
          - {{name: a, register: holding, address: 0, type: uint16}}
  - id: oven
    sources:
      - id: sensors
        protocol: mqtt
        broker: mqtt://127.0.0.1:{SHARED_PORT}
        qos: 1
        client_id: clock-{topic[-8:]}
        clean_session: true
        tags:
          - {{name: temp, topic: {topic}, json: v, timestamp: ts}}
"""


def rows(db: Path, machine: str, tag: str) -> list[tuple[int, float, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT r.ts, r.value, r.quality FROM readings_all r JOIN series s ON s.id = r.series_id "
            "WHERE s.machine_id = ? AND s.tag = ? ORDER BY r.ts", (machine, tag)).fetchall()


async def test_wall_clock_steps_change_no_schedule_and_lose_no_reading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="collector.pipeline")
    offset = [0]
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + offset[0])
    device = await Device([sim_device(1)]).start()
    topic = f"reliability/clock/{uuid.uuid4().hex}"
    rt = Runtime(parse_config(config(tmp_path, device.port, topic)))
    scans: dict[str, int] = {}
    phase_rows: dict[str, list[tuple[int, float, int]]] = {}
    try:
        await rt.start()
        modbus = rt.health_of("press", "io")
        mqtt = rt.health_of("oven", "sensors")
        await wait_for(lambda: modbus.connected and mqtt.connected, 15, "sources connected")
        for name, step in (("before", 0), ("back_1h", -HOUR_NS), ("forward_2h", 2 * HOUR_NS)):
            offset[0] += step
            first = int(modbus.extra.get("scans", 0))  # type: ignore[call-overload]
            await device.set("holding", 0, [len(scans) + 1])
            await asyncio.sleep(PHASE_S)
            scans[name] = int(modbus.extra.get("scans", 0)) - first  # type: ignore[call-overload]
            await rt.pipeline.flush()
            phase_rows[name] = rows(tmp_path / "ledger.db", "press", "a")

        # device stamps: one 10 s ahead (within the margin), one an hour ahead of the box
        box_ms = now_us() // 1000
        with Publisher(SHARED_PORT) as pub:
            pub.publish(topic, json.dumps({"v": 1.0, "ts": box_ms + 10_000}))
            pub.publish(topic, json.dumps({"v": 2.0, "ts": box_ms + 3_600_000}))
        await wait_for(lambda: mqtt.readings >= 2, 15, "both messages taken")
        await rt.pipeline.flush()
        stats = rt.pipeline.stats()
        app = create_app(rt)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            health = (await client.get("/api/v1/health")).json()
            metrics = (await client.get("/metrics")).text
            latest = (await client.get("/api/v1/machines/oven/latest")).json()["items"]
    finally:
        await rt.stop()
        await device.stop()
        monkeypatch.setattr(time, "time_ns", real)

    record("clock_steps", scans_per_phase=scans, expected_per_phase=round(PHASE_S / INTERVAL_S),
           rows=modbus.readings, future_flagged=stats["future"])
    # the schedule runs on the monotonic clock: the same number of scans in every phase
    for name, n in scans.items():
        assert 0.6 * PHASE_S / INTERVAL_S <= n <= PHASE_S / INTERVAL_S + 2, (name, scans)
    # nothing stamped before a step is dropped, moved or reordered by the ledger
    before, back, forward = (phase_rows[k] for k in ("before", "back_1h", "forward_2h"))
    stored = rows(tmp_path / "ledger.db", "press", "a")
    assert set(before) <= set(back) <= set(forward) <= set(stored)
    assert len(stored) == modbus.readings  # every reading the source handed over
    stamped_back = [r for r in back if r[0] < before[0][0]]  # stamped an hour earlier
    assert stamped_back and all(value == 2 for _, value, _ in stamped_back)
    assert max(ts for ts, _, _ in forward) - min(ts for ts, _, _ in forward) > HOUR_NS // 1000

    # a reading beyond the margin is flagged uncertain, counted and logged; within it, good
    oven = rows(tmp_path / "ledger.db", "oven", "temp")
    assert [(value, quality) for _, value, quality in oven] == [(1.0, 0), (2.0, 1)]
    assert stats["future"] == 1 and health["ledger"]["future"] == 1
    assert metric(metrics, "collector_pipeline_future_readings_total") == 1
    assert latest[0]["value"] == 2.0 and latest[0]["quality"] == "uncertain"
    lines = [r.getMessage() for r in caplog.records if "ahead of this box's clock" in r.getMessage()]
    assert len(lines) == 1 and "oven/temp" in lines[0] and "3600 s ahead" in lines[0], lines
