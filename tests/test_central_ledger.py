"""Several collector boxes writing to one PostgreSQL ledger, each owning its machines."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import text

from collector.config import parse_config
from collector.ledger import Ledger, MachineClaimedError
from collector.runtime import Runtime
from tests.kit.ports import free_port
from tests.kit.postgres import PG_URL


def box_config(tmp_path: Path, box: str, schema: str, machine: str, topic: str, port: int) -> str:
    return f"""
box: {box}
ledger:
  url: {PG_URL}
  schema: {schema}
spool:
  path: {tmp_path}/{box}-spool.db
pipeline:
  flush_interval: 100ms
api:
  port: {port}
machines:
  - id: {machine}
    sources:
      - id: sensors
        protocol: mqtt
        broker: mqtt://127.0.0.1:1883
        client_id: {box}-{uuid.uuid4().hex[:6]}
        qos: 1
        tags:
          - name: current
            topic: {topic}
            json: current_a
"""


async def test_a_machine_claimed_by_another_box_is_a_clear_error(tmp_path: Path, pg_schema: str) -> None:
    base = f"ledger:\n  url: {PG_URL}\n  schema: {pg_schema}\napi:\n  enabled: false\n"
    a = parse_config(f"box: box-a\n{base}spool:\n  path: {tmp_path}/a.db\nmachines: [{{id: press07}}]\n")
    b = parse_config(f"box: box-b\n{base}spool:\n  path: {tmp_path}/b.db\nmachines: [{{id: press07}}]\n")
    async with Runtime(a):
        with pytest.raises(MachineClaimedError) as info:
            await Runtime(b).start()
    assert str(info.value) == (
        "machine 'press07' belongs to collector box 'box-a' in this ledger, and this box is "
        "'box-b': give the machine another id, or, if this box replaces 'box-a', set `box: box-a` "
        "in the config")
    # the same box restarting (or a replacement box taking the old id) is fine
    async with Runtime(a):
        pass


def start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def count(ledger: Ledger, machine: str) -> int:
    async with ledger.engine.connect() as conn:
        return int((await conn.execute(text(
            "SELECT count(*) FROM readings_all r JOIN series s ON s.id = r.series_id "
            "WHERE s.machine_id = :m AND r.quality = 0"), {"m": machine})).scalar_one())


async def test_two_collector_processes_share_one_postgresql_ledger(tmp_path: Path, pg_schema: str) -> None:
    prefix = f"central-{uuid.uuid4().hex[:8]}"
    procs = []
    topics = {"press07": f"{prefix}/press07", "lathe12": f"{prefix}/lathe12"}
    ports = {"box-a": free_port(), "box-b": free_port()}
    for box, machine in (("box-a", "press07"), ("box-b", "lathe12")):
        path = tmp_path / f"{box}.yaml"
        path.write_text(box_config(tmp_path, box, pg_schema, machine, topics[machine], ports[box]))
        procs.append(start(path))
    ledger = Ledger(PG_URL, schema=pg_schema)
    try:
        import httpx

        for port in ports.values():  # both up and subscribed
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    async with httpx.AsyncClient(timeout=2) as http:
                        body = (await http.get(f"http://127.0.0.1:{port}/api/v1/health")).json()
                    if all(s["connected"] for s in body["sources"]):
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"collector on port {port} did not come up")

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", 1883)
        client.loop_start()
        base = int(time.time() * 1000)
        for i in range(100):
            for topic in topics.values():
                client.publish(topic, f'{{"current_a": {i}, "n": {base + i}}}', qos=1).wait_for_publish(5)
            await asyncio.sleep(0.002)  # distinct arrival times
        client.loop_stop()
        client.disconnect()

        await ledger.open(migrate=False)
        for _ in range(150):
            if await count(ledger, "press07") >= 100 and await count(ledger, "lathe12") >= 100:
                break
            await asyncio.sleep(0.2)
        assert await count(ledger, "press07") == 100
        assert await count(ledger, "lathe12") == 100
        owners = {m["id"]: m["box"] for m in await ledger.catalogue.machines()}
        assert owners == {"press07": "box-a", "lathe12": "box-b"}

        # a third box claiming press07 refuses to start, with a one-line error
        path = tmp_path / "box-c.yaml"
        path.write_text(box_config(tmp_path, "box-c", pg_schema, "press07", topics["press07"], free_port()))
        third = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "collector.cli", "run", "-c", str(path)],
            capture_output=True, text=True, timeout=60)
        assert third.returncode == 1
        assert "machine 'press07' belongs to collector box 'box-a'" in third.stderr
        assert "Traceback" not in third.stderr
    finally:
        await ledger.close()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0, 0], [p.stderr.read() if p.stderr else "" for p in procs]
