"""Recent readings (`readings_recent`) and their moves into `readings`: every reading stored
once, in exactly one of the two tables, and every answer the same before and after a move,
through replays, readings older than what has moved (a clock stepped back), duplicates,
text and missing values, a move that fails, and a restart with readings still waiting."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from collector.ledger import Ledger, PageQuery, sqlite_batch
from collector.model import BAD, Reading
from tests.kit.postgres import PG_URL, fresh_schema

T0 = 1_700_000_000_000_000
MINUTE = 60_000_000


async def answers(ledger: Ledger) -> dict[str, object]:
    """What readers see: every point, and buckets of 10 s, 1 and 5 minutes over a range with
    partial minutes at both ends."""
    series = await ledger.catalogue.series()
    points = [(p.series_id, p.ts, p.value, int(p.quality)) async for p in ledger.pages.points(
        PageQuery.of(series, 0, 2**62, 100_000))]
    out: dict[str, object] = {"points": points}
    numbers = [s for s in series if s.kind != "text"]
    for bucket in (10_000_000, MINUTE, 5 * MINUTE):
        found = await ledger.aggregates.buckets(numbers, T0 + 7_000_000, T0 + 40 * MINUTE + 3,
                                                bucket)
        out[f"b{bucket}"] = [(b.series_id, b.start, b.count, b.values, b.min, b.max,
                              None if b.avg is None else round(b.avg, 6), b.last, b.last_ts)
                             for b in found]
    out["minutes"] = await ledger.aggregates.minutes_with_values("press07", T0, T0 + 60 * MINUTE)
    return out


def tables(path: Path) -> tuple[int, int, int]:
    """Rows in readings, in readings_recent, and distinct keys over both."""
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM readings_recent), "
            "(SELECT count(*) FROM (SELECT DISTINCT series_id, ts FROM readings_all))").fetchone()


def rollups_equal_readings(path: Path) -> None:
    """readings_1m is exactly the minutes of `readings` (not of the recent ones)."""
    with sqlite3.connect(path) as conn:
        kept = conn.execute("SELECT * FROM readings_1m ORDER BY 1, 2").fetchall()
        rebuilt = conn.execute(
            "SELECT g.series_id, g.minute, g.n, g.nv, g.lo, g.hi, g.total, g.last_ts, r.value,"
            " r.text, r.value_int FROM (SELECT series_id, ts - ts % 60000000 AS minute,"
            " count(*) AS n, count(value) AS nv, min(value) AS lo, max(value) AS hi,"
            " sum(value) AS total, max(ts) AS last_ts FROM readings"
            " GROUP BY series_id, ts - ts % 60000000) g "
            "JOIN readings r ON r.series_id = g.series_id AND r.ts = g.last_ts ORDER BY 1, 2"
        ).fetchall()
    def rounded(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:  # sums of floats
        return [(*r[:6], round(r[6], 6) if isinstance(r[6], float) else r[6], *r[7:])
                for r in rows]

    assert rounded(kept) == rounded([tuple(r) for r in rebuilt])


async def test_every_answer_is_the_same_before_and_after_each_move(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    await ledger.open()
    rng = random.Random(7)
    stored: dict[tuple[str, int], object] = {}  # what the first write of each key brought

    async def write(readings: list[Reading]) -> None:
        for r in readings:
            stored.setdefault((r.tag, r.ts), r.value)
        await ledger.write(readings)

    try:
        now = T0
        for step in range(24):
            batch = []
            for _ in range(rng.randint(5, 40)):
                now += rng.randint(1, 9) * 1_000_000
                batch.append(Reading("press07", "current", now, round(rng.uniform(-5, 50), 3)))
                batch.append(Reading("press07", "count", now, rng.randint(0, 2**40)))
                if rng.random() < 0.1:
                    batch.append(Reading("press07", "current", now + 1, None, BAD))
                if rng.random() < 0.2:
                    batch.append(Reading("press07", "mode", now, rng.choice(["auto", "setup"])))
            if step % 5 == 3:  # a replay of what came before, some of it moved already
                batch += [Reading("press07", "current", ts, 99.0)
                          for (tag, ts) in rng.sample(sorted(stored), 30) if tag == "current"]
            if step % 7 == 4:  # older than what has moved: a clock stepped back
                batch += [Reading("press07", "current", T0 - k * 13_000_000, float(k))
                          for k in range(1, 20)]
            if step % 6 == 5:  # duplicates within one batch
                batch += batch[:5]
            await write(batch)
            before = await answers(ledger)
            if step % 3 == 2:
                moved = await ledger.writer.settle()
                assert moved > 0
                assert tables(path)[1] == 0
                rollups_equal_readings(path)
                assert await answers(ledger) == before, f"a move changed an answer at step {step}"
        in_table, recent, keys = tables(path)
        assert in_table + recent == keys == len(stored)  # each reading once, in one table
        tags = {s.id: s.tag for s in await ledger.catalogue.series()}
        points = (await answers(ledger))["points"]
        assert {(tags[sid], ts): value for sid, ts, value, _q in points} == stored  # type: ignore[union-attr, attr-defined]
        await ledger.writer.settle()
        rollups_equal_readings(path)
        assert tables(path) == (len(stored), 0, len(stored))
    finally:
        await ledger.close()


async def test_moves_come_by_time_and_by_count_and_a_restart_finds_what_waited(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    await ledger.open()
    writer = ledger.writer._sqlite
    assert writer is not None
    monkeypatch.setattr(sqlite_batch, "MOVE_ROWS", 250)
    await ledger.write([Reading("press07", "t", T0 + i, float(i)) for i in range(200)])
    assert tables(path) == (0, 200, 200) and writer.moves_done == 0
    await ledger.write([Reading("press07", "t", T0 + 200 + i, float(i)) for i in range(100)])
    assert tables(path) == (300, 0, 300) and writer.moves_done == 1  # 300 rows >= MOVE_ROWS
    writer._moved_at -= sqlite_batch.MOVE_SECONDS  # a minute later
    await ledger.write([Reading("press07", "t", T0 + 300, 1.0)])
    assert tables(path) == (301, 0, 301) and writer.moves_done == 2
    await ledger.write([Reading("press07", "t", T0 + 301 + i, 2.0) for i in range(50)])
    # the process dies with 50 readings waiting: no close, no move
    writer._conn.close()  # type: ignore[union-attr]
    writer._conn = None
    ledger.writer._sqlite = None
    await ledger.engine.dispose()
    assert tables(path) == (301, 50, 351)

    again = Ledger(f"sqlite:///{path}")
    await again.open()
    try:
        series = await again.catalogue.series()
        buckets = await again.aggregates.buckets(series, T0 - T0 % MINUTE,
                                                 T0 - T0 % MINUTE + MINUTE, MINUTE)
        assert [(b.count, b.last_ts) for b in buckets] == [(351, T0 + 350)]
        # a replay of the waiting rows and of moved ones stores nothing twice
        await again.write([Reading("press07", "t", T0 + 290 + i, 7.0) for i in range(61)])
        assert tables(path) == (301, 50, 351)
        # the minutes of what waited are not known: the next move sums them in one sort
        assert again.writer._sqlite is not None and again.writer._sqlite._minutes() is None
    finally:
        await again.close()  # a clean stop moves what waits
    assert tables(path) == (351, 0, 351)
    rollups_equal_readings(path)


async def test_a_failed_move_keeps_everything_readable_and_the_next_one_catches_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", "collector.ledger")
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    await ledger.open()
    writer = ledger.writer._sqlite
    assert writer is not None
    try:
        await ledger.write([Reading("press07", "t", T0 + i * 1_000_000, float(i)) for i in range(90)])
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # an admin's shell holding the write lock
        lock_wait = sqlite_batch.LOCK_WAIT
        sqlite_batch.LOCK_WAIT = 0.1
        try:
            await writer.move_quietly()
        finally:
            sqlite_batch.LOCK_WAIT = lock_wait
            blocker.execute("ROLLBACK")
            blocker.close()
        assert "moving recent readings into the ledger's readings table failed" in caplog.text
        assert tables(path) == (0, 90, 90)
        series = await ledger.catalogue.series()
        buckets = await ledger.aggregates.buckets(series, T0 - T0 % MINUTE,
                                                  T0 - T0 % MINUTE + 3 * MINUTE, MINUTE)
        assert sum(b.count for b in buckets) == 90
        await writer.move_quietly()
        assert tables(path) == (90, 0, 90)
        assert "moved into the ledger's readings table again" in caplog.text
        rollups_equal_readings(path)
    finally:
        await ledger.close()


async def test_postgresql_takes_recent_rows_a_sqlite_copy_brought_into_readings_at_start() -> None:
    with fresh_schema() as schema:
        ledger = Ledger(PG_URL, schema=schema)
        await ledger.open()
        try:
            await ledger.write([Reading("press07", "t", T0 + i * 1_000_000, float(i))
                                for i in range(100)])
            async with ledger.engine.begin() as conn:  # what `db copy` from SQLite may bring
                await conn.execute(text(
                    "INSERT INTO readings_recent (series_id, ts, value, quality) "
                    "SELECT series_id, ts + 100000000, value + 100, quality FROM readings"))
            series = await ledger.catalogue.series()
            window = (T0 - T0 % MINUTE, T0 - T0 % MINUTE + 5 * MINUTE)
            before = await ledger.aggregates.buckets(series, *window, MINUTE)
            assert sum(b.count for b in before) == 200
            from collector.ledger import SeriesInfo

            await ledger.writer.sync_series([SeriesInfo("press07", "t")])
            async with ledger.engine.connect() as conn:
                counts = (await conn.execute(text(
                    "SELECT (SELECT count(*) FROM readings), "
                    "(SELECT count(*) FROM readings_recent)"))).one()
            assert tuple(counts) == (200, 0)
            after = await ledger.aggregates.buckets(series, *window, MINUTE)
            assert after == before
        finally:
            await ledger.close()


async def test_a_move_meeting_rows_already_in_readings_sums_their_minutes_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rows written into `readings` behind the writer's back (an admin's shell, a tool) that
    the recent table holds too: the move keeps one of each and rebuilds their minutes, so
    the rollups still equal the readings."""
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    await ledger.open()
    try:
        await ledger.write([Reading("press07", "t", T0 + i * 1_000_000, float(i))
                            for i in range(90)])
        with sqlite3.connect(path) as admin:
            admin.execute("INSERT INTO readings (series_id, ts, value, quality) "
                          "SELECT series_id, ts, value, quality FROM readings_recent "
                          "WHERE ts % 3000000 = 0")
        assert tables(path) == (30, 90, 90)
        await ledger.writer.settle()
        assert "30 recent readings were in the readings table already" in caplog.text
        assert tables(path) == (90, 0, 90)
        rollups_equal_readings(path)
        series = await ledger.catalogue.series()
        buckets = await ledger.aggregates.buckets(series, T0 - T0 % MINUTE,
                                                  T0 - T0 % MINUTE + 3 * MINUTE, MINUTE)
        assert sum(b.count for b in buckets) == 90
    finally:
        await ledger.close()


async def test_a_move_sums_its_minutes_one_minute_at_a_time_as_one_sorted_pass_would(
        tmp_path: Path) -> None:
    """When the writer knows the minutes its waiting rows fall in (nothing waited when it
    started, or it has moved once since), a move sums them one minute per statement, in key
    order; wider or unknown spans take the one sorted statement. The rollups are the same
    either way."""
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    await ledger.open()
    writer = ledger.writer._sqlite
    assert writer is not None
    start = T0 - T0 % MINUTE

    def readings(first: int, seconds: int) -> list[Reading]:
        out = []
        for s in range(first, first + seconds):
            ts = start + s * 1_000_000
            out += [Reading("press07", "current", ts, s * 0.5 if s % 7 else None),
                    Reading("press07", "count", ts, 10_000 + s),
                    Reading("press07", "mode", ts, "auto" if s % 2 else "setup")]
        return out

    try:
        await ledger.write(readings(30, 50))  # 0:30 .. 1:19
        assert writer._minutes() == [start, start + MINUTE]  # nothing waited at the start
        writer._span = None  # as after a start with readings left waiting
        assert writer._minutes() is None
        await ledger.writer.settle()
        await ledger.write(readings(80, 30))  # 1:20 .. 1:49: a minute already half moved
        await ledger.write(readings(110, 40))  # .. 2:29
        assert writer._minutes() == [start + MINUTE, start + 2 * MINUTE]
        await ledger.writer.settle()
        rollups_equal_readings(path)
        await ledger.write(readings(150, 200))  # 2:30 .. 5:49: four minutes, one statement
        assert writer._minutes() is None
        await ledger.writer.settle()
        rollups_equal_readings(path)
        await ledger.write(readings(350, 5))
        assert writer._minutes() == [start + 5 * MINUTE]
        await ledger.writer.settle()
        rollups_equal_readings(path)
        assert tables(path) == (3 * 355 - 90, 0, 3 * 355 - 90)
    finally:
        await ledger.close()
