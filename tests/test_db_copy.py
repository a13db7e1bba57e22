"""`collector db copy`: a SQLite ledger into the machine's PostgreSQL and back into SQLite with
every value intact (uint64 at both ends, text, NaN, bad readings, status codes, production
rows), an interrupted copy killed mid-way and run again, and the copies it refuses."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from sqlalchemy import create_engine

from collector.ledger import Ledger, MachineInfo, SeriesInfo
from collector.ledger.copy import PROGRESS, tables
from collector.ledger.engine import _alembic_config
from collector.ledger.exact import exact_value
from collector.model import Quality, Reading
from tests.kit.ports import free_port
from tests.kit.postgres import PG_URL

pytestmark = pytest.mark.postgres

T0 = 1_764_000_000_000_000  # µs
EDGES = {  # tag: (value, quality, status)
    "u64_max": (2**64 - 1, Quality.GOOD, None),
    "u64_low": (2**63, Quality.GOOD, None),
    "i64_min": (-(2**63), Quality.GOOD, None),
    "i64_max": (2**63 - 1, Quality.GOOD, None),
    "past_double": (2**53 + 1, Quality.GOOD, None),
    "text": ("Grüße, \"quoted\"\nnew line\t'; DROP TABLE readings; --", Quality.GOOD, None),
    "empty_text": ("", Quality.GOOD, None),
    "nan": (math.nan, Quality.UNCERTAIN, None),
    "tiny": (5e-324, Quality.GOOD, None),
    "huge": (1.7976931348623157e308, Quality.GOOD, None),
    "bad": (None, Quality.BAD, 0x80350000),  # BadNoCommunication
    "status": (12.5, Quality.UNCERTAIN, 0x40920000),
    "flag": (True, Quality.GOOD, None),
}


def collector(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def make_source(path: Path, bulk: int = 0) -> None:
    """A SQLite ledger written by the collector's own writer, plus production rows."""
    led = Ledger(f"sqlite:///{path}")
    await led.open()
    try:
        await led.sync_config([MachineInfo("press07", "Press 07", "stamping", "line 2"),
                               MachineInfo("lathe03", "Lathe 03")],
                              [SeriesInfo("press07", tag) for tag in EDGES]
                              + [SeriesInfo("lathe03", f"t{i}", "°C") for i in range(10)])
        for minute in range(3):
            await led.write([Reading("press07", tag, T0 + minute * 60_000_000, v, q, s)
                             for tag, (v, q, s) in EDGES.items()])
        step = 50_000
        for start in range(0, bulk, step):
            await led.write([Reading("lathe03", f"t{i % 10}", T0 + (i // 10) * 1000, i * 0.25)
                             for i in range(start, min(bulk, start + step))])
    finally:
        await led.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO state_intervals VALUES ('press07', ?, ?, 'running')",
                     (T0, T0 + 60_000_000))
        conn.execute("INSERT INTO part_counts VALUES ('press07', ?, ?, ?, 0)",
                     (T0, 2**62, 2**62))
        conn.execute("INSERT INTO production_1m VALUES ('press07', ?, 3, 2, 1, 0.125)", (T0,))
        conn.execute("INSERT INTO production_1h VALUES ('press07', ?, 3, 2, 1, 0.125)", (T0,))
        conn.execute("INSERT INTO production_checkpoints VALUES ('press07', ?, 'running', ?, ?, ?)",
                     (T0, T0, json.dumps({"pending": None, "counter": 2**64 - 1}), T0))
        conn.execute("INSERT INTO downtime_notes VALUES ('press07', ?, 'tooling', ?, ?)",
                     (T0, "Werkzeugwechsel — 15 min", T0))
    conn.close()


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every ledger table, in key order."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {}
        for table in tables():
            key = ", ".join(c.name for c in table.primary_key.columns)
            out[table.name] = conn.execute(f"SELECT * FROM {table.name} ORDER BY {key}").fetchall()
        return out
    finally:
        conn.close()


async def pg_rows(schema: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def test_sqlite_to_postgresql_and_back_keeps_every_value(tmp_path: Path, pg_schema: str) -> None:
    source, back = tmp_path / "ledger.db", tmp_path / "back" / "ledger.db"
    asyncio.run(make_source(source, bulk=20_000))

    there = collector("db", "copy", "--from", f"sqlite:///{source}", "--to", PG_URL,
                      "--schema", pg_schema, "--batch", "3000")
    assert there.returncode == 0, there.stderr
    assert "verified" in there.stdout and "rows/s" in there.stdout
    assert "Traceback" not in there.stderr

    # on PostgreSQL the values read back exactly, uint64 in its PostgreSQL form
    rows = asyncio.run(pg_rows(pg_schema, (
        "SELECT s.tag, r.value, r.value_int, r.text, r.quality, r.status FROM readings_all r "
        f"JOIN series s ON s.id = r.series_id WHERE r.ts = {T0} AND s.machine_id = 'press07'")))
    got = {r["tag"]: r for r in rows}
    for tag in ("u64_max", "u64_low", "i64_min", "i64_max", "past_double"):
        assert exact_value(got[tag]["value"], got[tag]["value_int"]) == EDGES[tag][0], tag
    assert got["text"]["text"] == EDGES["text"][0]
    assert got["nan"]["value"] is None and got["nan"]["quality"] == Quality.UNCERTAIN
    assert got["bad"]["status"] == 0x80350000 and got["bad"]["quality"] == Quality.BAD
    assert got["huge"]["value"] == 1.7976931348623157e308 and got["tiny"]["value"] == 5e-324
    nxt = asyncio.run(pg_rows(pg_schema, "SELECT nextval(pg_get_serial_sequence('series', 'id'))"))
    assert nxt[0][0] == len(EDGES) + 11  # a series created later gets a new id

    home = collector("db", "copy", "--from", PG_URL, "--from-schema", pg_schema,
                     "--to", f"sqlite:///{back}")
    assert home.returncode == 0, home.stderr
    assert dump(back) == dump(source)  # every table, row for row, byte for byte

    again = collector("db", "copy", "--from", f"sqlite:///{source}", "--to", PG_URL,
                      "--schema", pg_schema)
    assert again.returncode == 0, again.stderr
    assert "already holds this copy" in again.stdout


def test_an_interrupted_copy_continues_and_counts_every_row_once(
        tmp_path: Path, pg_schema: str) -> None:
    source = tmp_path / "ledger.db"
    asyncio.run(make_source(source, bulk=300_000))
    args = ["db", "copy", "--from", f"sqlite:///{source}", "--to", PG_URL, "--schema", pg_schema,
            "--batch", "2000"]
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    async def copied_so_far() -> int:
        try:
            rows = await pg_rows(pg_schema, f"SELECT rows FROM {PROGRESS} WHERE tbl = 'readings'")
        except asyncpg.UndefinedTableError:
            return 0
        return int(rows[0][0]) if rows else 0

    deadline = time.monotonic() + 60
    while asyncio.run(copied_so_far()) < 20_000:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    partial = asyncio.run(pg_rows(pg_schema, "SELECT count(*) FROM readings_all"))[0][0]
    assert 20_000 <= partial < 300_000, partial

    done = collector(*args)
    assert done.returncode == 0, done.stderr
    assert "continued where the last run stopped" in done.stdout
    expected = dump(source)
    counts = asyncio.run(pg_rows(pg_schema, (
        "SELECT (SELECT count(*) FROM readings_all), "
        "(SELECT count(DISTINCT (series_id, ts)) FROM readings_all), "
        f"(SELECT to_regclass('{PROGRESS}') IS NULL)")))[0]
    assert counts[0] == counts[1] == len(expected["readings"])
    assert counts[2]  # the progress marker is gone once verified


def test_refusals_say_what_to_change(tmp_path: Path, pg_schema: str) -> None:
    # a source at an older schema revision
    old = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{old}")
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0004")
    engine.dispose()
    target = tmp_path / "new.db"
    out = collector("db", "copy", "--from", f"sqlite:///{old}", "--to", f"sqlite:///{target}")
    assert out.returncode == 1
    assert "revision 0004" in out.stderr and "collector db upgrade" in out.stderr
    assert not target.exists()

    # a target that already holds another ledger: different series under the same ids
    source = tmp_path / "ledger.db"
    asyncio.run(make_source(source))

    async def other_ledger() -> None:
        led = Ledger(PG_URL, schema=pg_schema)
        await led.open()
        await led.sync_config([MachineInfo("comp01")], [SeriesInfo("comp01", "vibration")])
        await led.close()

    asyncio.run(other_ledger())
    out = collector("db", "copy", "--from", f"sqlite:///{source}", "--to", PG_URL,
                    "--schema", pg_schema)
    assert out.returncode == 1, out.stdout
    assert "table series, row id=1" in out.stderr and "different data" in out.stderr
    assert "another --schema" in out.stderr
    assert asyncio.run(pg_rows(pg_schema, "SELECT count(*) FROM readings_all"))[0][0] == 0

    # a source a running collector writes to
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"""
ledger:
  url: sqlite:///{source}
spool:
  path: {tmp_path}/spool.db
api:
  enabled: false
machines:
  - id: press07
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: {free_port()}
        tags:
          - {{name: current, register: holding, address: 0, type: uint16}}
""")
    run = subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "-c", str(cfg)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not opened(run.pid, source):
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        out = collector("db", "copy", "--from", f"sqlite:///{source}",
                        "--to", f"sqlite:///{tmp_path}/elsewhere.db")
        assert out.returncode == 1
        assert f"process {run.pid}" in out.stderr and "stop the collector" in out.stderr
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)

    # URLs that are not a ledger
    out = collector("db", "copy", "--from", "mysql://x@db/plant", "--to", f"sqlite:///{target}")
    assert out.returncode == 1
    assert out.stderr.startswith("collector: --from 'mysql://x@db/plant': backend 'mysql'")
    out = collector("db", "copy", "--from", f"sqlite:///{tmp_path}/missing.db",
                    "--to", f"sqlite:///{target}")
    assert out.returncode == 1 and "missing.db' does not exist" in out.stderr
    (tmp_path / "notes.db").write_text("not a database")
    out = collector("db", "copy", "--from", f"sqlite:///{tmp_path}/notes.db",
                    "--to", f"sqlite:///{target}")
    assert out.returncode == 1 and "notes.db is not a SQLite ledger" in out.stderr
    out = collector("db", "copy", "--from", f"sqlite:///{source}",
                    "--to", f"postgresql://postgres@127.0.0.1:{free_port()}/plant")
    assert out.returncode == 1 and "cannot reach or create the target postgresql://" in out.stderr
    assert "Traceback" not in out.stderr


def opened(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path.resolve())
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False
