"""The broker goes away with QoS 1 messages in flight: restarted (its persistent session kept),
or cut off in the middle of a message by a TCP proxy between it and the collector. Every
message the broker accepted reaches the ledger exactly once (a redelivered message has the
same device time, so the same key)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

from collector.config import parse_config
from collector.runtime import Runtime
from tests.kit.mqtt import Mosquitto, Publisher
from tests.kit.proxy import CuttingProxy
from tests.kit.waiting import wait_for
from tests.reliability.conftest import LONG, record

TOPIC = "plant/oven/telemetry"
TS0 = 1_700_000_000_000_000  # µs
PAD = "x" * 2_000  # messages of about 2 kB: a cut lands inside one


def config(tmp_path: Path, port: int) -> str:
    return f"""
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
spool: {{path: {tmp_path}/spool.db}}
pipeline: {{flush_interval: 200ms}}
api: {{enabled: false}}
machines:
  - id: oven
    sources:
      - id: sensors
        protocol: mqtt
        broker: mqtt://127.0.0.1:{port}
        qos: 1
        client_id: reliability-{tmp_path.name[-20:]}
        keepalive: 5s
        timeout: 2s
        reconnect_delay: 100ms
        reconnect_delay_max: 500ms
        tags:
          - {{name: seq, topic: {TOPIC}, json: seq, timestamp: ts}}
"""


def message(seq: int) -> tuple[str, str]:
    return TOPIC, json.dumps({"seq": seq, "ts": TS0 + seq, "pad": PAD})


def stored(db: Path) -> list[int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return [int(v) for (v,) in conn.execute(
            "SELECT r.value FROM readings_all r JOIN series s ON s.id = r.series_id "
            "WHERE s.tag = 'seq' AND r.quality = 0 ORDER BY r.ts")]


async def test_broker_restart_with_qos1_in_flight_loses_and_repeats_nothing(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    count = 6_000 if LONG else 3_000
    rt = Runtime(parse_config(config(tmp_path, broker.port)))
    try:
        await rt.start()
        health = rt.health_of("oven", "sensors")
        await wait_for(lambda: health.connected, 15, "connected")
        write = rt.ledger.write
        gate = asyncio.Event()  # the ledger holds its commits until the broker is gone

        async def held_write(*args: object, **kwargs: object) -> None:
            await gate.wait()
            await write(*args, **kwargs)  # type: ignore[arg-type]

        rt.ledger.write = held_write  # type: ignore[method-assign]
        with Publisher(broker.port) as pub:  # the broker has them all (PUBACK) before the restart
            await asyncio.to_thread(pub.publish_many, [message(i) for i in range(count)])
        await wait_for(lambda: health.readings > 0, 30, "messages in flight")
        in_flight = health.readings  # delivered, not yet durable, so not acknowledged
        await asyncio.to_thread(broker.stop)  # SIGTERM: the session and its queue are saved
        await wait_for(lambda: not health.connected, 15, "disconnected")
        gate.set()
        await asyncio.to_thread(broker.start)
        t = time.monotonic()
        await wait_for(lambda: len(stored(tmp_path / "ledger.db")) >= count, 60, "all stored")
        caught_up = time.monotonic() - t
    finally:
        await rt.stop()
        broker.stop()
    got = stored(tmp_path / "ledger.db")
    record("broker_restart", messages=count, in_flight_at_stop=in_flight,
           redelivered=health.extra.get("redelivered"), stored=len(got),
           caught_up_s=round(caught_up, 1))
    assert in_flight > 0
    assert got == list(range(count))


async def test_connection_cut_mid_message_loses_and_repeats_nothing(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    proxy = await CuttingProxy(broker.port).start()
    count, cuts = (4_000, 15) if LONG else (2_000, 5)
    rt = Runtime(parse_config(config(tmp_path, proxy.port)))
    pub = Publisher(broker.port)
    try:
        await rt.start()
        health = rt.health_of("oven", "sensors")
        await wait_for(lambda: health.connected, 15, "connected")
        per_cut = count // cuts
        for k in range(cuts):
            proxy.cut()  # inside this batch's stream
            await asyncio.to_thread(pub.publish_many,
                                    [message(i) for i in range(k * per_cut, (k + 1) * per_cut)])
            await wait_for(lambda k=k: proxy.cuts > k, 15, "a cut")  # type: ignore[misc]
            # the next cut only once the new session is up (not inside its handshake)
            await wait_for(lambda k=k: proxy.connections >= k + 2 and health.connected, 15,  # type: ignore[misc]
                           "a new session")
        await wait_for(lambda: len(stored(tmp_path / "ledger.db")) >= per_cut * cuts, 60,
                       "all stored")
    finally:
        pub.close()
        await rt.stop()
        await proxy.stop()
        broker.stop()
    got = stored(tmp_path / "ledger.db")
    record("broker_cut", messages=per_cut * cuts, cuts=proxy.cuts, connections=proxy.connections,
           errors=health.errors, redelivered=health.extra.get("redelivered"), stored=len(got))
    assert proxy.cuts == cuts and proxy.connections >= cuts + 1
    assert health.errors >= cuts
    assert got == list(range(per_cut * cuts))
