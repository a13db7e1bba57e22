"""Disk full: the ledger's disk, then the ledger's and the spool's disks at once, filled up
under `collector run` (size-capped tmpfs mounts). The collector keeps running and says so in
health; once space is back it recovers by itself: the spool drains, every MQTT message the
broker handed over (QoS 1, acknowledged only once durable) is in the ledger, everything
committed before is still there, and readings it had to drop are counted."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.kit.collector import CollectorProcess, ledger_rows
from tests.kit.disk import fill, tmpfs
from tests.kit.plant import Plant
from tests.reliability.conftest import LONG, record

FULL_S = 20.0 if LONG else 4.0  # seconds each disk stays full


async def until(collector: CollectorProcess, condition: Any, within: float, what: str
                ) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        health: dict[str, Any] = await asyncio.to_thread(collector.health)
        if condition(health):
            return health
        assert time.monotonic() < deadline, f"{what} not within {within} s: {health['ledger']}"
        await asyncio.sleep(0.2)


def committed(db: Path) -> set[tuple[int, int]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return set(conn.execute("SELECT series_id, ts FROM readings_all"))
    finally:
        conn.close()


async def test_full_disks_keep_the_collector_running_and_it_recovers_what_it_acknowledged(
        tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ledger-disk", "8m") as ledger_disk, \
            tmpfs(tmp_path / "spool-disk", "16m") as spool_disk:
        plant = await Plant(tmp_path, modbus_tags=5, opcua_nodes=1, mqtt_rate=50).start()
        db = ledger_disk / "ledger.db"
        cfg = tmp_path / "collector.yaml"
        collector = CollectorProcess(cfg, tmp_path / "collector.log")
        cfg.write_text(plant.config(f"sqlite:///{db}", spool_disk / "spool.db",
                                    collector.api_port, production=False, queue_size=200))
        figures: dict[str, Any] = {}
        try:
            await asyncio.to_thread(collector.start)
            plant.start_publishing()
            await until(collector, lambda h: all(s["connected"] for s in h["sources"]), 30,
                        "sources connected")
            await asyncio.sleep(1.0)

            # 1: the ledger's disk is full; the spool (another disk) takes the readings
            before = committed(db)
            filler = await asyncio.to_thread(fill, ledger_disk)
            down = await until(collector, lambda h: not h["ledger"]["ok"], 30, "ledger failing")
            await asyncio.sleep(FULL_S)
            full = await asyncio.to_thread(collector.health)
            assert collector.running()
            assert full["status"] == "degraded" and "full" in (full["ledger"]["last_error"] or "")
            assert full["ledger"]["backlog"] > 0 and full["ledger"]["dropped"] == 0
            assert all(s["connected"] for s in full["sources"])
            filler.unlink()
            t = time.monotonic()
            await until(collector, lambda h: h["ledger"]["ok"] and h["ledger"]["backlog"] == 0,
                        60, "ledger recovered and spool drained")
            figures["ledger_full"] = {"spooled": full["ledger"]["backlog"],
                                      "recovered_s": round(time.monotonic() - t, 1),
                                      "error": down["ledger"]["last_error"]}
            assert before <= committed(db)

            # 2: the ledger's and the spool's disks full at once
            before = committed(db)
            fillers = [await asyncio.to_thread(fill, d) for d in (ledger_disk, spool_disk)]
            await until(collector, lambda h: "spool" in (h["ledger"]["last_error"] or ""), 30,
                        "spool failing too")
            await asyncio.sleep(FULL_S)
            full = await asyncio.to_thread(collector.health)
            assert collector.running() and full["status"] == "degraded"
            assert not full["ledger"]["ok"]
            for f in fillers:
                f.unlink()
            t = time.monotonic()
            await until(collector, lambda h: h["ledger"]["ok"] and h["ledger"]["backlog"] == 0
                        and h["ledger"]["queued"] < 200, 60, "recovered from both")
            recovered_s = time.monotonic() - t
            plant.pause_publishing()
            sent = list(plant.sent)
            deadline = time.monotonic() + 60
            while {int(v) for _, v, _ in ledger_rows(db, "oven", "seq")} < set(sent):
                assert time.monotonic() < deadline, "acknowledged MQTT messages missing"
                await asyncio.sleep(0.5)
            after = await asyncio.to_thread(collector.health)
            figures["both_full"] = {"dropped": after["ledger"]["dropped"],
                                    "recovered_s": round(recovered_s, 1),
                                    "error": full["ledger"]["last_error"]}
            assert before <= committed(db)
            assert collector.stop() == 0
        finally:
            collector.stop()
            await plant.stop()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seqs = [int(v) for _, v, _ in ledger_rows(db, "oven", "seq")]
    text = collector.log_text()
    record("disk_full", full_s=FULL_S, mqtt_sent=len(sent), mqtt_stored=len(set(seqs)),
           **figures)
    assert "Traceback" not in text, text[-3000:]
    assert set(sent) <= set(seqs)
    assert text.count("the spool cannot be written either") == 1

