"""Ledger ingest speed: Reading objects → SQLite and PostgreSQL ledgers, beside a bare
`sqlite3.executemany` of the same rows on the same machine in the same run.

    .venv/bin/python bench/ingest.py [--readings 1000000] [--series 2000] [--batch 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.config import PipelineConfig  # noqa: E402
from collector.ledger import Ledger  # noqa: E402
from collector.ledger.engine import SQLITE_PRAGMAS  # noqa: E402
from collector.model import Reading  # noqa: E402
from collector.pipeline import Pipeline  # noqa: E402
from collector.spool import Spool  # noqa: E402

T0 = 1_763_776_800_000_000
PG = os.environ.get("COLLECTOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def make_readings(n: int, series: int) -> list[Reading]:
    # one scan of every series per second, like a collector polling at 1 Hz
    return [Reading(f"m{(i % series) // 100:02d}", f"tag{i % series:04d}", T0 + (i // series) * 1_000_000,
                    float(i % 1000) * 0.5) for i in range(n)]


def chunks(items: list[Reading], size: int) -> list[list[Reading]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def bare_sqlite(path: Path, readings: list[Reading], batch: int) -> float:
    """The floor: the same table, pragmas and batches, rows prepared outside the timing and
    inserted in arrival order (a plain executemany, as a hand-written logger would)."""
    ids = {}
    rows = []
    for r in readings:
        sid = ids.setdefault((r.machine, r.tag), len(ids) + 1)
        rows.append((sid, r.ts, r.value, None, int(r.quality)))
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    conn.execute("CREATE TABLE readings (series_id INTEGER NOT NULL, ts BIGINT NOT NULL, value FLOAT, "
                 "text TEXT, quality SMALLINT NOT NULL, PRIMARY KEY (series_id, ts)) WITHOUT ROWID")
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                         rows[i:i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


async def ledger_write(url: str, readings: list[Reading], batch: int, schema: str | None = None) -> float:
    ledger = Ledger(url, schema=schema)
    await ledger.open()
    await ledger.write(readings[:1])  # creates the series the way a first scan does
    parts = chunks(readings, batch)
    started = time.perf_counter()
    for part in parts:
        await ledger.write(part)
    elapsed = time.perf_counter() - started
    await ledger.close()
    return len(readings) / elapsed


async def pipeline_write(url: str, readings: list[Reading], batch: int, spool_path: Path,
                         schema: str | None = None) -> float:
    """Through the whole pipeline: 16 producers put() scan-sized chunks and wait until each is
    durable (as the MQTT adapter does), so the queue never overflows into the spool and the
    writer's group commit forms the batches."""
    ledger = Ledger(url, schema=schema)
    await ledger.open()
    spool = Spool(spool_path, 10**9)
    await spool.open()
    pipeline = Pipeline(ledger, spool, PipelineConfig(batch_size=batch, queue_size=max(100_000, 4 * batch)))
    await pipeline.start()
    parts = chunks(readings, 2000)

    async def producer(mine: list[list[Reading]]) -> None:
        for part in mine:
            await pipeline.put(part, wait=True)

    started = time.perf_counter()
    await asyncio.gather(*(producer(parts[i::16]) for i in range(16)))
    elapsed = time.perf_counter() - started
    await pipeline.stop()
    await spool.close()
    await ledger.close()
    assert pipeline.written == len(readings) and not pipeline.spilled, (pipeline.written, pipeline.spilled)
    return len(readings) / elapsed


def psql(sql: str) -> None:
    subprocess.run(["psql", PG, "-q", "-c", sql], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--series", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=PipelineConfig().batch_size)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()

    readings = make_readings(args.readings, args.series)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        results["bare sqlite3.executemany"] = bare_sqlite(d / "bare.db", readings, args.batch)
        results["ledger.write, SQLite"] = asyncio.run(
            ledger_write(f"sqlite:///{d}/ledger.db", readings, args.batch))
        results["pipeline → SQLite"] = asyncio.run(
            pipeline_write(f"sqlite:///{d}/pipe.db", readings, args.batch, d / "spool1.db"))
        if not args.no_pg:
            for name, fn in (("ledger.write, PostgreSQL", ledger_write), ("pipeline → PostgreSQL", pipeline_write)):
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                psql(f"CREATE SCHEMA {schema}")
                try:
                    extra = (d / f"{schema}.db",) if fn is pipeline_write else ()
                    results[name] = asyncio.run(fn(PG, readings, args.batch, *extra, schema=schema))  # type: ignore[operator]
                finally:
                    psql(f"DROP SCHEMA {schema} CASCADE")

    bare = results["bare sqlite3.executemany"]
    print(f"# ingest: {args.readings:,} readings, {args.series:,} series, batches of {args.batch:,}")
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}")
    print(f"{'path':<28} {'readings/s':>12} {'vs bare SQLite':>15}")
    for name, rate in results.items():
        print(f"{name:<28} {rate:>12,.0f} {rate / bare:>14.0%}")


if __name__ == "__main__":
    main()
