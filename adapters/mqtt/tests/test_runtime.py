"""End to end through `Runtime` into a SQLite ledger, and the crash test: a collector process
SIGKILLed while QoS 1 messages are in flight loses none and stores none twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from collector.config import parse_config
from collector.ledger import PageQuery
from collector.model import GOOD
from collector.runtime import Runtime
from tests.kit.waiting import wait_for

ROOT = Path(__file__).resolve().parents[3]
TS0 = 1_700_000_000_000  # epoch ms of message 0


def collector_yaml(tmp_path: Path, broker_url: str, topic: str, **options: object) -> str:
    return yaml.safe_dump({
        "ledger": {"url": f"sqlite:///{tmp_path}/ledger.db"},
        "spool": {"path": str(tmp_path / "spool.db")},
        "pipeline": {"flush_interval": "200ms"},
        "api": {"enabled": False},
        "machines": [{"id": "press07", "sources": [{
            "id": "sensors", "protocol": "mqtt", "broker": broker_url, "qos": 1,
            "client_id": f"collector-{tmp_path.name}", "reconnect_delay": "200ms",
            "reconnect_delay_max": "1s", **options,
            "tags": [
                {"name": "n", "topic": topic, "json": "n", "timestamp": "ts"},
                {"name": "{tag}", "topic": topic.rsplit("/", 1)[0] + "/plain/{tag}"},
            ]}]}],
    })


def ledger_rows(db: Path, machine: str, tag: str) -> list[tuple[int, float]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(
            "SELECT r.ts, r.value FROM readings_all r JOIN series s ON s.id = r.series_id "
            "WHERE s.machine_id = ? AND s.tag = ? ORDER BY r.ts", (machine, tag)).fetchall()


async def test_runtime_into_sqlite(tmp_path, publisher, prefix):
    topic = f"{prefix}/press07/telemetry"
    config = parse_config(collector_yaml(tmp_path, "mqtt://127.0.0.1:1883", topic))
    async with Runtime(config) as rt:
        health = rt.health_of("press07", "sensors")
        await wait_for(lambda: health.connected)
        publisher.publish_many([(topic, json.dumps({"n": i, "ts": TS0 + i})) for i in range(500)])
        publisher.publish(f"{prefix}/press07/plain/Spindle-RPM", "1450")
        await wait_for(lambda: health.extra.get("acked", 0) >= 501)
        series = await rt.ledger.catalogue.find("press07", ["n", "spindle_rpm"])
        by_tag = {s.tag: s for s in series}
        points = [p async for p in rt.ledger.pages.points(PageQuery.of([by_tag["n"]], 0, 2**62, 10_000))]
        assert [(p.ts, p.value, p.quality) for p in points] == [
            ((TS0 + i) * 1000, i, GOOD) for i in range(500)]
        points = [p async for p in rt.ledger.pages.points(PageQuery.of([by_tag["spindle_rpm"]], 0, 2**62, 10))]
        assert [p.value for p in points] == [1450]


PUBLISHER = """
import json, sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, topic, count, rate = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
c = paho.Client(CallbackAPIVersion.VERSION2)
c.max_queued_messages_set(0)
c.max_inflight_messages_set(1000)
c.connect("127.0.0.1", port)
c.loop_start()
start = time.monotonic()
infos = []
for i in range(count):
    infos.append(c.publish(topic, json.dumps({"n": i, "ts": TS0 + i}), qos=1))
    ahead = start + i / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
for info in infos:
    info.wait_for_publish(60)
c.loop_stop()
c.disconnect()
print("published", count)
""".replace("TS0", str(TS0))


def start_collector(config: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", "from collector.cli import main; raise SystemExit(main())",
         "run", "-c", str(config)], cwd=ROOT, stdout=out, stderr=out,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def start_publisher(port: int, topic: str, count: int, rate: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), topic, str(count), str(rate)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


async def test_sigkill_with_qos1_in_flight_loses_nothing(tmp_path, broker, prefix):
    """The collector is SIGKILLed twice while a publisher streams QoS 1 messages; after the
    last restart every published message is in the ledger exactly once."""
    mosq = broker()
    topic = f"{prefix}/press07/telemetry"
    count = 4000
    config = tmp_path / "collector.yaml"
    config.write_text(collector_yaml(tmp_path, mosq.url, topic))
    db = tmp_path / "ledger.db"
    log = tmp_path / "collector.log"
    procs: list[subprocess.Popen[bytes]] = []
    pub = None
    try:
        procs.append(start_collector(config, log))
        await wait_for(lambda: "connected to" in log.read_text(), within=30)
        pub = start_publisher(mosq.port, topic, count, 1000)
        for _ in range(2):
            await wait_for(lambda: db.exists() and len(ledger_rows(db, "press07", "n")) > 300,
                           within=30)
            await asyncio.sleep(0.7)
            kill(procs[-1])  # mid-stream: readings queued, messages delivered but not acknowledged
            stored_at_kill = len(ledger_rows(db, "press07", "n"))
            assert stored_at_kill < count
            await asyncio.sleep(0.5)  # the broker queues what arrives meanwhile for the session
            procs.append(start_collector(config, log))
        await wait_for(lambda: pub.poll() is not None, within=60)
        assert pub.returncode == 0, pub.stdout.read() if pub.stdout else ""
        await wait_for(lambda: len(ledger_rows(db, "press07", "n")) >= count, within=60)
        await asyncio.sleep(1.0)  # anything delivered twice would land now
        rows = ledger_rows(db, "press07", "n")
        assert len(rows) == count
        assert rows == [((TS0 + i) * 1000, float(i)) for i in range(count)]
    finally:
        if pub is not None and pub.poll() is None:
            pub.kill()
            pub.wait(10)
        for proc in procs:
            kill(proc)
