"""The ledger on SQLite and PostgreSQL, same code: insert, replay, latest, ranges, buckets,
retention."""

from __future__ import annotations

import pytest

from collector.ledger import Ledger, MachineInfo, PageQuery, Point, SeriesInfo
from collector.model import BAD, GOOD, UNCERTAIN, Reading, now_us

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z in µs


def batch(n: int, machine: str = "press07", tag: str = "current", start: int = T0,
          step: int = 1_000_000) -> list[Reading]:
    return [Reading(machine, tag, start + i * step, float(i)) for i in range(n)]


async def page(ledger: Ledger, query: PageQuery) -> tuple[list[Point], tuple[int, int] | None]:
    """A page's readings and the key the next page resumes after (None at the end)."""
    return [p async for p in ledger.pages.points(query)], await ledger.pages.end(query)


async def count(ledger: Ledger) -> int:
    series = await ledger.catalogue.series()
    total = 0
    after = None
    while True:
        points, after = await page(ledger, PageQuery.of(series, 0, 2**62, 10_000, after))
        total += len(points)
        if after is None:
            return total


async def test_insert_and_idempotent_replay(ledger: Ledger) -> None:
    readings = batch(500) + batch(500, tag="voltage")
    await ledger.write(readings)
    await ledger.write(readings)  # a replay of the same batch
    await ledger.write(readings[100:300])  # and a partial overlap
    assert await count(ledger) == 1000


async def test_every_batch_of_known_series_is_stored(ledger: Ledger) -> None:
    """The hot path: series already known, many small batches, rows out of key order."""
    await ledger.write(batch(1) + batch(1, tag="voltage"))
    for i in range(1, 20):
        await ledger.write([Reading("press07", "voltage", T0 + i, None, BAD),
                            Reading("press07", "current", T0 + i, float(i)),
                            Reading("press07", "current", T0 - i, "text")])
    assert await count(ledger) == 2 + 19 * 3
    series = await ledger.catalogue.series()
    points, _ = await page(ledger, PageQuery.of(series, T0 - 5, T0 - 4, 10))  # end is exclusive
    assert [p.value for p in points] == ["text"]


async def test_duplicates_within_one_batch(ledger: Ledger) -> None:
    r = Reading("press07", "current", T0, 1.0)
    await ledger.write([r, r, r._replace(value=2.0)])
    assert await count(ledger) == 1


async def test_value_kinds_and_quality_round_trip(ledger: Ledger) -> None:
    await ledger.write([
        Reading("m", "num", T0, 12.5),
        Reading("m", "int", T0, 42),
        Reading("m", "flag", T0, True),
        Reading("m", "flag", T0 + 1, False),
        Reading("m", "label", T0, "AUTO"),
        Reading("m", "gone", T0, None, BAD),
        Reading("m", "maybe", T0, 3.0, UNCERTAIN),
    ])
    latest = {s.tag: p for s, p in await ledger.latest.of_machine("m")}
    assert latest["num"].value == 12.5
    assert latest["int"].value == 42
    assert latest["flag"].value is False and latest["flag"].ts == T0 + 1
    assert latest["label"].value == "AUTO"
    assert latest["gone"].value is None and latest["gone"].quality == BAD
    assert latest["maybe"].quality == UNCERTAIN and latest["num"].quality == GOOD


async def test_config_sync_sets_units_and_sources(ledger: Ledger) -> None:
    await ledger.sync_config([MachineInfo("press07", "Press 07", "stamping", "line2")],
                             [SeriesInfo("press07", "current", "A", "io", "modbus")])
    await ledger.write(batch(3))
    machines = await ledger.catalogue.machines()
    assert machines == [{"id": "press07", "name": "Press 07", "area": "stamping", "line": "line2",
                         "box": None, "tags": ["current"]}]
    (series, point), = await ledger.latest.of_machine("press07")
    assert (series.unit, series.source, series.protocol, series.kind) == ("A", "io", "modbus", "number")
    assert point.value == 2.0 and point.ts == T0 + 2_000_000
    # a unit edited in the config follows into the ledger; the id stays
    await ledger.sync_config([MachineInfo("press07", "Press 7")],
                             [SeriesInfo("press07", "current", "mA", "io", "modbus")])
    (series2, _), = await ledger.latest.of_machine("press07")
    assert series2.id == series.id and series2.unit == "mA"


async def test_latest_per_series(ledger: Ledger) -> None:
    await ledger.write(batch(10) + batch(5, tag="voltage", start=T0 + 50))
    await ledger.write(batch(3, machine="lathe1"))
    latest = {s.tag: p for s, p in await ledger.latest.of_machine("press07")}
    assert set(latest) == {"current", "voltage"}
    assert latest["current"].value == 9.0 and latest["current"].ts == T0 + 9_000_000
    assert latest["voltage"].value == 4.0
    assert await ledger.latest.of_machine("unknown") == []


async def test_a_latest_value_stamped_far_ahead_gives_way_to_the_next_reading(
        ledger: Ledger) -> None:
    """One reading from a clock that jumped years ahead is stored (as the pipeline flagged
    it), but it does not hold the series' latest value: the next reading takes its place.
    Within the future margin (60 s) the latest value stays forward only."""
    now = now_us()

    async def latest() -> tuple[float, int]:
        (point,) = [p for s, p in await ledger.latest.of_machine("press07") if s.tag == "t"]
        return point.value, point.ts  # type: ignore[return-value]

    await ledger.write([Reading("press07", "t", now - 10_000_000, 1.0)])
    await ledger.write([Reading("press07", "t", now + 10 * 365 * 86_400_000_000, 99.0,
                                UNCERTAIN)])
    assert await latest() == (99.0, now + 10 * 365 * 86_400_000_000)
    await ledger.write([Reading("press07", "t", now - 9_000_000, 2.0)])
    assert await latest() == (2.0, now - 9_000_000)
    await ledger.write([Reading("press07", "t", now - 10_000_000, 1.0)])  # a replay: older
    assert await latest() == (2.0, now - 9_000_000)
    await ledger.write([Reading("press07", "t", now + 30_000_000, 3.0)])  # within the margin
    await ledger.write([Reading("press07", "t", now - 8_000_000, 4.0)])
    assert await latest() == (3.0, now + 30_000_000)


async def test_range_with_cursor_is_stable_while_inserting(ledger: Ledger) -> None:
    await ledger.write(batch(250) + batch(250, tag="voltage"))
    series = await ledger.catalogue.series("press07")
    seen = []
    points, after = await page(ledger, PageQuery.of(series, T0, T0 + 10**12, 100))
    seen += points
    # new data arriving while a client pages must not shift the pages
    await ledger.write(batch(50, start=T0 + 1_000 * 1_000_000))
    while after is not None:
        points, after = await page(ledger, PageQuery.of(series, T0, T0 + 10**12, 100, after))
        seen += points
    assert len(seen) == 550
    keys = [(p.ts, p.series_id) for p in seen]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # start inclusive, end exclusive
    points, _ = await page(ledger, PageQuery.of(series[:1], T0 + 10_000_000, T0 + 20_000_000, 1000))
    assert [p.value for p in points] == [float(i) for i in range(10, 20)]


async def test_a_page_reads_alike_as_points_columns_and_its_end(ledger: Ledger) -> None:
    """One query, read three ways: the same readings in the same order, and the key the next
    page resumes after."""
    await ledger.write(batch(40) + batch(40, tag="voltage", start=T0 + 500_000)
                       + [Reading("press07", "door", T0 + i * 1_000_000, i % 2 == 0)
                          for i in range(40)]
                       + [Reading("press07", "mode", T0 + 7, "AUTO", UNCERTAIN)])
    series = await ledger.catalogue.series("press07")
    bools = {s.id for s in series if s.tag == "door"}
    first = PageQuery.of(series, T0 + 3, T0 + 30_000_000, 25)
    assert first.bools == bools and first.ids == tuple(sorted(s.id for s in series))
    later = PageQuery.of(series, T0 + 3, T0 + 30_000_000, 25, (T0 + 9_000_000, series[0].id))
    for query in (first, later):
        points = [p async for p in ledger.pages.points(query, chunk=7)]
        columns = await ledger.pages.columns(query)
        assert len(points) == len(columns) == 25
        assert [(p.ts, p.series_id) for p in points] == [
            (columns.ts[i], columns.series_at(i)) for i in range(25)]
        assert [p.quality for p in points] == list(columns.qualities)
        for p, value in zip(points, columns.values, strict=True):
            assert p.value == (value != 0.0 if p.series_id in bools else value)
        assert all(isinstance(p.value, bool) for p in points if p.series_id in bools)
        key = await ledger.pages.end(query)
        assert key == (points[-1].ts, points[-1].series_id)
        if query.after is not None:
            assert (points[0].ts, points[0].series_id) > query.after
    assert await ledger.pages.end(PageQuery.of(series, T0, T0 + 1, 25)) is None  # no more rows
    assert [p async for p in ledger.pages.points(PageQuery.of([], T0, T0 + 10**9, 25))] == []


async def test_time_buckets(ledger: Ledger) -> None:
    # 1 Hz for 10 minutes: values 0..599; 1-minute buckets
    await ledger.write(batch(600, start=T0 - T0 % 60_000_000))
    series = await ledger.catalogue.series("press07")
    start = T0 - T0 % 60_000_000
    buckets = await ledger.aggregates.buckets(series, start, start + 600_000_000, 60_000_000)
    assert len(buckets) == 10
    for i, b in enumerate(buckets):
        values = [float(v) for v in range(i * 60, i * 60 + 60)]
        assert b.start == start + i * 60_000_000
        assert (b.count, b.min, b.max, b.last) == (60, min(values), max(values), values[-1])
        assert abs(b.avg - sum(values) / 60) < 1e-9  # type: ignore[operator]
    # empty buckets are omitted; an offset shifts the bucket edges (local days)
    await ledger.write(batch(1, start=start + 3_600_000_000))
    buckets = await ledger.aggregates.buckets(series, start, start + 7_200_000_000, 60_000_000)
    assert len(buckets) == 11
    shifted = await ledger.aggregates.buckets(series, start, start + 600_000_000, 60_000_000,
                                              offset=30_000_000)
    assert len(shifted) == 11 and shifted[0].count == 30 and shifted[0].start == start - 30_000_000


async def test_retention_deletes_only_old_rows_in_batches(ledger: Ledger) -> None:
    await ledger.write(batch(1000) + batch(1000, tag="voltage"))
    deleted = await ledger.delete_older_than(T0 + 600 * 1_000_000, batch=64)
    assert deleted == 1200
    assert await count(ledger) == 800
    series = await ledger.catalogue.series("press07")
    points, _ = await page(ledger, PageQuery.of(series, 0, 2**62, 1))
    assert points[0].ts == T0 + 600 * 1_000_000


async def test_timescaledb_is_detected_never_required(ledger: Ledger) -> None:
    from collector.ledger.timescale import timescale_version

    # the machine's PostgreSQL has no TimescaleDB: plain tables, everything still works
    assert await timescale_version(ledger.engine) is None
    assert ledger.timescale is False


async def rollup_rows(ledger: Ledger) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The rollup table as kept by the writer, and the same rebuilt from the readings now
    (once the recent readings have moved, as they do every minute)."""
    from sqlalchemy import text

    await ledger.writer.settle()

    kept = "SELECT * FROM readings_1m ORDER BY series_id, minute"
    rebuilt = (
        "SELECT g.series_id, g.minute, g.n, g.nv, g.lo, g.hi, g.total, g.last_ts, r.value, r.text,"
        " r.value_int FROM (SELECT series_id, ts - ts % 60000000 AS minute, count(*) AS n, count(value) AS nv,"
        " min(value) AS lo, max(value) AS hi, sum(value) AS total, max(ts) AS last_ts"
        " FROM readings GROUP BY series_id, ts - ts % 60000000) g "
        "JOIN readings r ON r.series_id = g.series_id AND r.ts = g.last_ts ORDER BY 1, 2")
    newest = ("SELECT r.* FROM readings r WHERE r.ts = (SELECT max(ts) FROM readings "
              "WHERE series_id = r.series_id) ORDER BY 1")
    async with ledger.engine.connect() as conn:
        return ([tuple(r) for q in (kept, "SELECT * FROM latest_readings ORDER BY 1")
                 for r in await conn.execute(text(q))],
                [tuple(r) for q in (rebuilt, newest) for r in await conn.execute(text(q))])


async def test_minute_rollup_counts_every_stored_reading_once(ledger: Ledger) -> None:
    """Replays, partial overlaps, duplicates in a batch, late data, text and missing values,
    retention: the rollups and latest values always equal ones rebuilt from the readings."""
    step = 7_000_000  # 7 s: minutes hold 8 or 9 readings and batches end mid-minute
    await ledger.write(batch(100, step=step))
    await ledger.write(batch(100, start=T0 + 100 * step, step=step))
    await ledger.write(batch(150, step=step))  # a replay overlapping both
    await ledger.write(batch(20, start=T0 - 50 * step, step=step))  # late, older data
    r = Reading("press07", "current", T0 + 5_000_000_000, 1.5)
    await ledger.write([r, r._replace(value=9.0), r._replace(ts=r.ts + 1, value=None, quality=BAD)])
    await ledger.write([Reading("press07", "state", T0 + i * step, f"s{i}") for i in range(30)])
    await ledger.write([Reading("press07", "current", T0 + 3, float("nan"))])
    kept, rebuilt = await rollup_rows(ledger)
    assert kept == rebuilt and len(kept) >= 30
    await ledger.delete_older_than(T0 + 30 * step + 1)  # the cutoff falls inside a minute
    kept, rebuilt = await rollup_rows(ledger)
    assert kept == rebuilt and kept[0][1] <= T0 + 30 * step < kept[0][1] + 60_000_000


async def test_aggregates_from_rollups_equal_aggregates_from_readings(ledger: Ledger) -> None:
    readings = [Reading("press07", "current", T0 + i * 1_300_000, float(i % 17) - 3.25)
                for i in range(3000)]
    await ledger.write(readings)
    series = await ledger.catalogue.series()
    start, end = T0 + 12_345_678, T0 + 3000 * 1_300_000 - 4_321_000  # mid-minute edges
    for bucket in (60_000_000, 300_000_000, 3_600_000_000):
        got = await ledger.aggregates.buckets(series, start, end, bucket)  # rollup + edges
        expect: dict[int, list[float]] = {}
        for x in readings:
            if start <= x.ts < end:
                expect.setdefault(x.ts - x.ts % bucket, []).append(x.value)  # type: ignore[arg-type]
        assert [b.start for b in got] == sorted(expect)
        for b in got:
            values = expect[b.start]
            assert (b.count, b.min, b.max) == (len(values), min(values), max(values))
            assert b.avg == pytest.approx(sum(values) / len(values), rel=1e-12)
            assert b.last == values[-1]


async def test_migration_builds_latest_and_rollups_from_stored_readings(ledger: Ledger) -> None:
    """A ledger from before migration 0003 keeps its readings; upgrading fills both tables."""
    from alembic import command

    from collector.ledger.engine import _alembic_config, _upgrade

    await ledger.write(batch(300, step=7_000_000) + batch(50, tag="voltage", step=13_000_000)
                       + [Reading("press07", "state", T0 + i, f"s{i}") for i in range(5)])
    async with ledger.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(_alembic_config(c), "0002"))
        await conn.run_sync(_upgrade)
    kept, rebuilt = await rollup_rows(ledger)
    assert kept == rebuilt and len(kept) > 40
