"""Overload: readings offered ten times faster than the ledger takes them. Memory stays bounded
(the queue never holds more than `queue_size`, RSS grows by less than a stated bound), the
excess goes to the spool and every reading reaches the ledger once it keeps up again. At the
spool's cap readings are dropped, oldest or newest as configured, and counted in health,
metrics and one log line a minute."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from collector.config import PipelineConfig, parse_config
from collector.ledger import Ledger
from collector.model import Reading
from collector.pipeline import Pipeline
from collector.spool import Spool
from tests.kit.api import ApiRuntime
from tests.kit.collector import metric
from tests.reliability.conftest import LONG, record

CAPACITY = 2_000  # readings/s the throttled ledger takes
OFFERED = 20_000  # readings/s offered: ten times as many
FLOOD_S = 30.0 if LONG else 8.0
QUEUE_SIZE = 10_000
RSS_GROWTH_BOUND_MB = 60.0  # the queue's 10,000 readings are a few MB; room for the allocator
T0 = 1_700_000_000_000_000


class ThrottledLedger:
    """A real SQLite ledger that takes at most `capacity` readings a second (None: no limit),
    or none at all while `failing`."""

    def __init__(self, ledger: Ledger, capacity: float | None):
        self.ledger = ledger
        self.capacity = capacity
        self.failing = False

    async def write(self, batch: Sequence[Reading]) -> None:
        if self.failing:
            raise OSError("ledger unreachable (test)")
        if self.capacity:
            await asyncio.sleep(len(batch) / self.capacity)
        await self.ledger.write(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) / 1024  # type: ignore[union-attr]


def readings(batch: int, size: int, tags: int = 100) -> list[Reading]:
    base = T0 + batch * size
    return [Reading("press", f"t{i % tags}", base + i, float(batch)) for i in range(size)]


async def test_ten_times_more_than_the_ledger_takes_is_spooled_in_bounded_memory(
        tmp_path: Path) -> None:
    inner = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    await inner.open()
    ledger = ThrottledLedger(inner, CAPACITY)
    spool = Spool(tmp_path / "spool.db", 10**9)
    await spool.open()
    pipeline = Pipeline(ledger, spool, PipelineConfig(queue_size=QUEUE_SIZE, batch_size=2_000,
                                                      flush_interval=0.1))  # type: ignore[arg-type]
    await pipeline.start()
    peak = baseline = rss_mb()
    offered = 0
    try:
        size, every = 1_000, 1_000 / OFFERED
        began = time.monotonic()
        n = 0
        while time.monotonic() - began < FLOOD_S:
            await pipeline.put(readings(n, size))
            n += 1
            offered += size
            peak = max(peak, rss_mb())
            ahead = began + n * every - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        flood = time.monotonic() - began
        during = dict(pipeline.stats())
        ledger.capacity = None  # the ledger keeps up again
        caught_up = time.monotonic()
        while pipeline.spool.backlog or pipeline.queued:
            assert time.monotonic() - caught_up < 120, pipeline.stats()
            await asyncio.sleep(0.2)
            peak = max(peak, rss_mb())
        replay_s = time.monotonic() - caught_up
    finally:
        await pipeline.stop()
        await spool.close()
        await inner.close()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        stored, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT series_id || ':' || ts) FROM readings_all").fetchone()
    growth = peak - baseline
    record("overload", seconds=round(flood, 1), offered=offered,
           offered_per_s=round(offered / flood), ledger_per_s=CAPACITY,
           written_during=during["written"], spilled=during["spilled"],
           max_queued=pipeline.max_queued, queue_size=QUEUE_SIZE, rss_growth_mb=round(growth, 1),
           rss_bound_mb=RSS_GROWTH_BOUND_MB, replay_s=round(replay_s, 1), stored=stored,
           dropped=pipeline.spool.dropped)
    assert offered / flood >= 5 * CAPACITY, "not an overload: the test box offered too little"
    assert pipeline.max_queued <= QUEUE_SIZE
    assert during["spilled"] >= offered - QUEUE_SIZE - during["written"] - 2_000 > 0
    assert growth <= RSS_GROWTH_BOUND_MB
    assert pipeline.spool.dropped == 0
    assert stored == distinct == offered


@pytest.mark.parametrize("drop", ["oldest", "newest"])
async def test_at_the_spool_cap_drops_are_counted_in_health_metrics_and_one_log_line(
        tmp_path: Path, drop: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="collector.spool")
    inner = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    await inner.open()
    ledger = ThrottledLedger(inner, None)
    ledger.failing = True
    spool = Spool(tmp_path / "spool.db", 256 * 1024, drop)
    await spool.open()
    pipeline = Pipeline(ledger, spool, PipelineConfig(queue_size=1_000, flush_interval=0.05))  # type: ignore[arg-type]
    await pipeline.start()
    batches, size = 60, 500
    try:
        for n in range(batches):
            await pipeline.put(readings(n, size))
        await pipeline.flush()
        kept = {r.value for _, chunk in await spool.peek(10**9) for r in chunk}
        config = parse_config("machines:\n  - id: press\n    sources: []\n")
        runtime = ApiRuntime(ledger=inner, config=config, pipeline=pipeline)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime)),
                                     base_url="http://t") as client:
            health = (await client.get("/api/v1/health")).json()
            metrics = (await client.get("/metrics")).text
    finally:
        await pipeline.stop()
        await spool.close()
        await inner.close()
    lines = [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]
    offered = batches * size
    record(f"spool_cap_{drop}", offered=offered, kept=spool.backlog, dropped=spool.dropped,
           log_lines=len(lines), kept_batches=sorted(int(v) for v in kept))  # type: ignore[call-overload]
    assert spool.dropped > 0 and spool.dropped + spool.backlog == offered
    assert health["ledger"]["dropped"] == spool.dropped and health["status"] == "degraded"
    assert metric(metrics, "collector_spool_dropped_readings_total") == spool.dropped
    assert len(lines) == 1 and f"dropped the {drop}" in lines[0], lines
    # in the order batches reached the spool (a batch a failing write held comes after those
    # spilled meanwhile): oldest keeps an unbroken run up to the last one, newest the first ones
    with sqlite3.connect(tmp_path / "spool.db") as conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM batches ORDER BY id")]
        last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()[0]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    if drop == "oldest":
        assert ids[-1] == last and ids[0] > 1 and batches - 1 in kept
    else:
        assert ids[0] == 1 and ids[-1] == last and batches - 1 not in kept
    assert len(kept) * size == spool.backlog
