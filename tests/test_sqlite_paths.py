"""SQLite's own paths: the writer's multi-row statements on its own thread, the direct reads
on the loop's thread and their fallback when the file is locked, and what a SQLite URL may
be. Real files, real SQLite; no mocks."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.ledger import Ledger, LedgerURLError, small_reads, sqlite_batch
from collector.ledger.small_reads import SmallReader
from collector.ledger.sqlite_batch import chunks, many, values_sql
from collector.ledger.writer import ROWS_PER_TURN
from collector.model import Reading
from collector.runtime import run_service

T0 = 1_700_000_000_000_000
S = 1_000_000


@given(st.integers(min_value=0, max_value=50_000), st.sampled_from([999 // 5, 999 // 10,
                                                                     32_766 // 5, 32_766 // 10]))
def test_chunks_are_few_powers_of_two_that_add_up(n: int, most: int) -> None:
    sizes = chunks(n, most)
    assert sum(sizes) == n
    assert all(s & (s - 1) == 0 and 0 < s <= most for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    top = 1 << (most.bit_length() - 1)
    rest = [s for s in sizes if s != top]  # after the full chunks, each size at most once
    assert len(set(rest)) == len(rest) and len(sizes) - len(rest) == n // top


def test_values_group_repeated_and_rows_counted(tmp_path: Path) -> None:
    sql = "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT DO NOTHING"
    assert values_sql(sql, 3) == ("INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?) "
                                  "ON CONFLICT DO NOTHING")
    with pytest.raises(ValueError, match="no VALUES"):
        values_sql("DELETE FROM t", 2)
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    rows = [(i, f"v{i}") for i in range(10_000)]
    assert many(conn, sql, rows) == 10_000
    assert many(conn, sql, rows[5_000:] + [(10_000, "new")]) == 1  # only the new row counts
    assert conn.execute("SELECT count(*), sum(a) FROM t").fetchone() == (10_001, sum(range(10_001)))
    assert many(conn, sql, []) == 0


async def test_batches_commit_while_the_loop_is_busy(tmp_path: Path) -> None:
    """The writer's thread commits while the loop's thread runs Python flat out (an API under
    load): every reading stored once, latest values and rollups in step."""
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    await ledger.open()
    stop = False

    async def busy() -> None:
        while not stop:
            sum(i * i for i in range(20_000))  # ~1 ms of Python, then a turn for the others
            await asyncio.sleep(0)

    spinner = asyncio.create_task(busy())
    try:
        for k in range(5):
            await ledger.write([Reading("press07", f"t{j}", T0 + (k * 4_000 + i) * S, float(i))
                                for j in range(5) for i in range(4_000)])
    finally:
        stop = True
        await spinner
    series = await ledger.catalogue.series("press07")
    assert len(series) == 5
    stats = await ledger.aggregates.buckets(series, T0, T0 + 20_000 * S, 86_400 * S)
    assert sum(b.count for b in stats) == 100_000
    latest = await ledger.latest.rows([s.id for s in series])
    assert {(ts, value) for _sid, ts, value, _t, _q, _i, _st in latest} == {(T0 + 19_999 * S, 3_999.0)}
    await ledger.close()


async def test_a_large_batch_gives_the_loop_a_turn_before_it_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Preparing a batch of thousands of readings holds the loop for milliseconds; the writer
    lets a waiting scan run before it adds its first statements to that (scan jitter)."""
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    await ledger.open()
    ticks: list[int] = []
    seen: list[int] = []  # ticks when each batch reached the writer's SQL
    split = sqlite_batch.SqliteBatchWriter._split

    def spy(self: sqlite_batch.SqliteBatchWriter, conn: sqlite3.Connection,
            rows: list[tuple[object, ...]], oldest: int) -> object:
        seen.append(len(ticks))
        return split(self, conn, rows, oldest)

    async def tick() -> None:
        ticks.append(1)

    def batch(n: int, k: int) -> list[Reading]:
        return [Reading("press07", f"t{i}", T0 + k * S, float(i)) for i in range(n)]

    try:
        await ledger.write(batch(2_000, 0))  # the series exist from here on
        monkeypatch.setattr(sqlite_batch.SqliteBatchWriter, "_split", spy)
        for n, k in ((10, 1), (2_000, 2)):
            ticker = asyncio.get_running_loop().create_task(tick())
            await ledger.write(batch(n, k))
            await ticker
        assert seen == [0, 2]  # a small batch goes at once; the large one after a turn
        assert sqlite_batch.STATEMENT_ROWS < 2_000
    finally:
        await ledger.close()


async def test_a_batch_larger_than_a_slice_is_made_into_rows_between_turns(
        tmp_path: Path) -> None:
    """A backlog's batch (80,000 readings) took 40 ms of the loop to become rows in one piece:
    the rows are made a slice at a time, with the loop's turns between, and all are stored."""
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    await ledger.open()
    made: list[int] = []  # ticks of the loop seen as each slice was made into rows
    ticks = 0
    rows_of = ledger.writer._rows

    def spy(batch: list[Reading]) -> list[tuple[object, ...]]:
        made.append(ticks)
        return rows_of(batch)

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    n = 2 * ROWS_PER_TURN + 10
    ledger.writer._rows = spy  # type: ignore[method-assign]
    ticker = asyncio.get_running_loop().create_task(ticking())
    try:
        await ledger.write([Reading("press07", f"t{i % 50}", T0 + (i // 50) * S, float(i))
                            for i in range(n)])
        assert len(made) == 1 + 3  # the first slice met new series; three once they exist
        assert made[1] < made[2] < made[3]  # a turn of the loop between slices
        await ledger.writer.settle()
        stored = sqlite3.connect(tmp_path / "ledger.db").execute(
            "SELECT count(*), sum(value) FROM readings").fetchone()
        assert stored == (n, float(sum(range(n))))
    finally:
        ticker.cancel()
        await ledger.close()


def test_small_read_steps_aside_while_the_file_is_locked(tmp_path: Path) -> None:
    """Another process holds the file exclusively (a backup tool, an admin's sqlite3 shell):
    the direct read gives up after a moment, leaving the query to the usual path, which
    waits; once the lock is gone the direct read answers again."""
    path = tmp_path / "locked.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    setup.execute("INSERT INTO t VALUES (1), (2)")
    setup.close()
    reader = SmallReader(str(path))
    assert reader.fetch("SELECT a FROM t ORDER BY a", []) == [(1,), (2,)]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    assert reader.fetch("SELECT a FROM t ORDER BY a", []) is None
    other.execute("COMMIT")
    other.close()
    assert reader.fetch("SELECT a FROM t ORDER BY a", []) == [(1,), (2,)]
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        reader.fetch("SELECT * FROM missing", [])  # anything else is an error, not a fallback
    reader.close()


@pytest.mark.parametrize("cache_kib", [None, 2_048])
async def test_the_direct_reader_has_the_page_cache_it_is_given(tmp_path: Path,
                                                                 cache_kib: int | None) -> None:
    """The API's worker processes give their ledgers a small page cache (the OS caches the
    file for all of them); a setting passed in, not a module constant changed."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    ledger = Ledger(url) if cache_kib is None else Ledger(url, read_cache_kib=cache_kib)
    await ledger.open()
    try:
        expected = small_reads.CACHE_KIB if cache_kib is None else cache_kib
        assert small_reads.fetch(ledger.engine, "PRAGMA cache_size", [], 1) == [(-expected,)]
    finally:
        await ledger.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory"])
def test_a_sqlite_ledger_is_a_file(url: str) -> None:
    with pytest.raises(LedgerURLError, match="a SQLite ledger is a file on disk"):
        Ledger(url)


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    async def loop_name() -> str:
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.setenv("COLLECTOR_EVENT_LOOP", "asyncio")
    assert run_service(loop_name()).startswith("asyncio")
    monkeypatch.setenv("COLLECTOR_EVENT_LOOP", "uvloop")
    assert run_service(loop_name()).startswith("uvloop")
    monkeypatch.setenv("COLLECTOR_EVENT_LOOP", "libuv-please")
    with pytest.raises(ValueError, match="use auto, uvloop or asyncio"):
        run_service(loop_name())


async def test_a_held_write_lock_is_waited_out_without_blocking_the_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another connection holds the write lock (retention, an admin's shell): the batch
    waits for it asleep, so the loop goes on; held too long, the batch fails with a clear
    error (and the pipeline spools it)."""
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    await ledger.open()
    await ledger.write([Reading("press07", "current", T0, 1.0)])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    asyncio.get_running_loop().call_later(0.4, other.execute, "COMMIT")
    await ledger.write([Reading("press07", "current", T0 + S, 2.0)])
    assert ticks >= 20  # the loop ran all the while
    monkeypatch.setattr(sqlite_batch, "LOCK_WAIT", 0.2)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="write lock was held elsewhere for 0 s"):
        await ledger.write([Reading("press07", "current", T0 + 2 * S, 3.0)])
    other.execute("ROLLBACK")
    other.close()
    tick_task.cancel()
    await ledger.write([Reading("press07", "current", T0 + 2 * S, 3.0)])
    rows = await ledger.latest.rows([s.id for s in await ledger.catalogue.series("press07")])
    assert [(ts, value) for _sid, ts, value, _t, _q, _i, _st in rows] == [(T0 + 2 * S, 3.0)]
    await ledger.close()


async def test_checkpoints_run_off_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_batch, "CHECKPOINT_BYTES", 64 * 1024)
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    await ledger.open()
    before = path.stat().st_size
    await ledger.write([Reading("press07", f"t{j}", T0 + i * S, float(i))
                        for j in range(10) for i in range(2_000)])
    task = ledger.writer._sqlite._checkpoint  # type: ignore[union-attr]
    assert task is not None
    await task
    assert path.stat().st_size > before + 200_000  # the WAL's pages are in the file now
    await ledger.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM readings_all").fetchone() == (20_000,)
    conn.close()


async def test_a_failing_sqlite_write_is_spooled_and_replayed_once(tmp_path: Path) -> None:
    """The ledger file refuses writes mid-stream (here a trigger standing in for a full disk
    or an I/O error): the writer rolls back, its connection stays usable, the pipeline spools
    and replays, and afterwards every reading is stored once, with latest values and minute
    rollups that add up."""
    from tests.test_pipeline import all_keys, close, make

    path = tmp_path / "ledger.db"
    p = await make(tmp_path, f"sqlite:///{path}", batch_size=200, flush_interval=0.05)
    sent: list[Reading] = []

    async def feed(start: int, n: int) -> None:
        for i in range(start, start + n):
            batch = [Reading("press07", f"t{j}", T0 + i * S, float(i)) for j in range(4)]
            sent.extend(batch)
            await p.put(batch)
        await p.flush()

    admin = sqlite3.connect(path, isolation_level=None)
    try:
        await feed(0, 100)
        assert p.ledger_ok and p.written == 400
        admin.execute("CREATE TRIGGER refuse BEFORE INSERT ON readings_recent "
                      "BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END")
        await feed(100, 100)
        assert not p.ledger_ok and p.spool.backlog > 0
        assert "disk I/O error (simulated)" in str(p.last_error)
        admin.execute("DROP TRIGGER refuse")
        for _ in range(300):
            await asyncio.sleep(0.1)
            await p.flush()
            if p.spool.backlog == 0 and p.ledger_ok:
                break
        assert p.spool.backlog == 0 and p.ledger_ok
        assert sorted(await all_keys(p.ledger)) == sorted((r.tag, r.ts) for r in sent)
        await p.ledger.writer.settle()  # the minutes of the recent readings (`schema`)
        sums = admin.execute("SELECT (SELECT sum(n) FROM readings_1m), "
                             "(SELECT count(*) FROM readings_all), "
                             "(SELECT count(*) FROM latest_readings WHERE ts = ?)",
                             (T0 + 199 * S,)).fetchone()
        assert sums == (800, 800, 4)
    finally:
        admin.close()
        await close(p)
