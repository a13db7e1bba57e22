"""The read side of the ledger: the queries the API and the derivations need.

Every query walks the (series_id, ts) primary key: the newest reading of a series is one index
probe, a range is one index range, a page resumes after the last (ts, series_id) it returned
(keyset paging, never OFFSET), and time buckets are integer division of `ts`, so SQLite and
PostgreSQL give the same answer.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.ledger import small_reads
from collector.ledger.rollup import MINUTE, RECOMPUTE, for_asyncpg
from collector.ledger.schema import machines, series
from collector.model import Quality, Value


@dataclass(frozen=True)
class Series:
    id: int
    machine: str
    tag: str
    unit: str | None
    source: str | None
    protocol: str | None
    kind: str | None


@dataclass(frozen=True)
class Point:
    series_id: int
    ts: int
    value: Value
    quality: Quality


@dataclass(frozen=True)
class Bucket:
    series_id: int
    start: int
    count: int
    min: float | None
    max: float | None
    avg: float | None
    last: Value


def present(kind: str | None, value: float | None, text_value: str | None) -> Value:
    """A stored value as the API shows it: text, a bool for bool series, else the number."""
    if text_value is not None:
        return text_value
    if value is None:
        return None
    if kind == "bool":
        return value != 0.0
    return value


async def list_machines(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(machines).order_by(machines.c.id))).mappings().all()
        tags = (await conn.execute(select(series.c.machine_id, series.c.tag).order_by(series.c.id))).all()
    by_machine: dict[str, list[str]] = {}
    for machine_id, tag in tags:
        by_machine.setdefault(machine_id, []).append(tag)
    return [{**dict(r), "tags": by_machine.get(r["id"], [])} for r in rows]


async def list_series(engine: AsyncEngine, machine: str | None = None) -> list[Series]:
    if engine.dialect.name == "sqlite":  # one row per tag: read directly (see `small_reads`)
        where = "" if machine is None else "WHERE machine_id = ? "
        found = small_reads.fetch(engine, f"{_SERIES} {where}ORDER BY machine_id, id",
                             [] if machine is None else [machine], 0)
        if found is not None:
            return [Series(*r) for r in found]
    query = select(series).order_by(series.c.machine_id, series.c.id)
    if machine is not None:
        query = query.where(series.c.machine_id == machine)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [Series(r.id, r.machine_id, r.tag, r.unit, r.source, r.protocol, r.kind) for r in rows]


_SERIES = "SELECT id, machine_id, tag, unit, source, protocol, kind FROM series"


async def latest(engine: AsyncEngine, machine: str) -> list[tuple[Series, Point]]:
    """The newest reading of every series of a machine (series without readings are left out)."""
    all_series = {s.id: s for s in await list_series(engine, machine)}
    rows = await latest_rows(engine, list(all_series))
    out = []
    for sid, ts, value, text_value, quality in rows:
        s = all_series[sid]
        out.append((s, Point(sid, ts, present(s.kind, value, text_value), Quality(quality))))
    out.sort(key=lambda item: item[0].id)
    return out


async def readings(
    engine: AsyncEngine,
    series_list: Sequence[Series],
    start: int,
    end: int,
    limit: int,
    after: tuple[int, int] | None = None,
) -> tuple[list[Point], tuple[int, int] | None]:
    """Readings with start <= ts < end, oldest first, at most `limit`; and the key to resume
    after (None when there is nothing more). `after` is the (ts, series_id) of the last row seen."""
    points = [p async for p in stream_readings(engine, series_list, start, end, limit + 1, after)]
    if len(points) > limit:
        points = points[:limit]
        last = points[-1]
        return points, (last.ts, last.series_id)
    return points, None


def _range_filter(ids: Sequence[int], start: int, end: int,
                  after: tuple[int, int] | None) -> tuple[str, dict[str, object]]:
    """WHERE clause and parameters for series `ids` in [start, end), resuming after the
    (ts, series_id) key of the last row seen."""
    params: dict[str, object] = {"ids": list(ids), "start": start, "end": end}
    where = "series_id IN :ids AND ts >= :start AND ts < :end"
    if after is not None:
        where += " AND (ts > :cts OR (ts = :cts AND series_id > :csid))"
        params.update(cts=after[0], csid=after[1])
    return where, params


async def stream_readings(
    engine: AsyncEngine,
    series_list: Sequence[Series],
    start: int,
    end: int,
    limit: int,
    after: tuple[int, int] | None = None,
    chunk: int = 5000,
) -> AsyncIterator[Point]:
    """Like `readings`, but yields rows as they come, fetching `chunk` rows per query."""
    kinds = {s.id: s.kind for s in series_list}
    ids = sorted(kinds)
    if not ids or limit <= 0:
        return
    remaining = limit
    cursor = after
    while remaining > 0:
        n = min(chunk, remaining)
        # pages of `chunk` rows through the driver (on SQLite read directly: a long CSV
        # export then goes at its own pace even while the loop is busy)
        rows = await reading_rows(engine, ids, start, end, n, cursor)
        for sid, ts, value, text_value, quality in rows:
            yield Point(sid, ts, present(kinds[sid], value, text_value), Quality(quality))
        if len(rows) < n:
            return
        remaining -= len(rows)
        cursor = (rows[-1][1], rows[-1][0])


async def aggregate(
    engine: AsyncEngine,
    series_list: Sequence[Series],
    start: int,
    end: int,
    bucket: int,
    offset: int = 0,
) -> list[Bucket]:
    """count/min/max/avg/last per series and bucket of `bucket` µs, aligned to the epoch
    (shifted by `offset` µs, for day buckets in a local time zone); empty buckets omitted;
    ordered by series, then time."""
    stats = await aggregate_stats(engine, series_list, start, end, bucket, offset)
    return sorted((Bucket(b.series_id, b.start, b.count, b.min, b.max, b.avg, b.last) for b in stats),
                  key=lambda b: (b.series_id, b.start))


_DELETE_BATCH = text(
    "DELETE FROM readings WHERE series_id = :sid AND ts < :cutoff AND ts <= COALESCE("
    "(SELECT ts FROM readings WHERE series_id = :sid AND ts < :cutoff ORDER BY ts "
    "LIMIT 1 OFFSET :skip), :cutoff)"
)


async def delete_older_than(engine: AsyncEngine, cutoff: int, batch: int = 5000) -> int:
    """Delete readings older than `cutoff` in transactions of at most `batch` rows per series,
    so the writer is never locked out for long, and their one-minute rollups (the minute the
    cutoff falls in is rebuilt from what is left of it). Returns the number of readings
    deleted."""
    minute = cutoff - cutoff % MINUTE
    async with engine.connect() as conn:
        ids = [row[0] for row in await conn.execute(select(series.c.id))]
    deleted = 0
    for sid in ids:
        while True:
            async with engine.begin() as conn:
                result = await conn.execute(
                    _DELETE_BATCH, {"sid": sid, "cutoff": cutoff, "skip": batch - 1}
                )
            deleted += result.rowcount or 0
            if (result.rowcount or 0) < batch:
                break
        async with engine.begin() as conn:
            await conn.execute(_DELETE_LATEST, {"sid": sid, "cutoff": cutoff})
            await conn.execute(_DELETE_ROLLUP, {"sid": sid, "upto": minute + MINUTE})
            if minute != cutoff:
                await conn.exec_driver_sql(
                    RECOMPUTE if engine.dialect.name == "sqlite" else for_asyncpg(RECOMPUTE),
                    (sid, minute, minute + MINUTE))
    return deleted


_DELETE_LATEST = text("DELETE FROM latest_readings WHERE series_id = :sid AND ts < :cutoff")
_DELETE_ROLLUP = text("DELETE FROM readings_1m WHERE series_id = :sid AND minute < :upto")


async def page_end(
    engine: AsyncEngine,
    series_list: Sequence[Series],
    start: int,
    end: int,
    limit: int,
    after: tuple[int, int] | None = None,
) -> tuple[int, int] | None:
    """The (ts, series_id) of the `limit`-th row of a page when more rows follow it, else None:
    lets a streamed page announce its next cursor before sending its rows."""
    ids = sorted({s.id for s in series_list})
    if not ids or limit <= 0:
        return None
    where, params = _range_filter(ids, start, end, after)
    params["skip"] = limit - 1
    query = text(
        f"SELECT ts, series_id FROM readings WHERE {where} "
        "ORDER BY ts, series_id LIMIT 2 OFFSET :skip"
    ).bindparams(bindparam("ids", expanding=True))
    async with engine.connect() as conn:
        rows = (await conn.execute(query, params)).all()
    return (rows[0][0], rows[0][1]) if len(rows) == 2 else None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is 3x slower
class BucketStats:
    """A `Bucket` plus the number of non-null values, so partial buckets can be merged."""

    series_id: int
    start: int
    count: int
    values: int
    min: float | None
    max: float | None
    avg: float | None
    last: Value
    last_ts: int


_AGGREGATE_STATS = text(
    "WITH b AS ("
    " SELECT series_id, (ts + :offset) / :bucket AS bk, count(*) AS n, count(value) AS nv,"
    " min(value) AS lo, max(value) AS hi, avg(value) AS mean, max(ts) AS last_ts"
    " FROM readings WHERE series_id IN :ids AND ts >= :start AND ts < :end"
    " GROUP BY series_id, bk) "
    "SELECT b.series_id, b.bk, b.n, b.nv, b.lo, b.hi, b.mean, r.value, r.text, b.last_ts FROM b "
    "JOIN readings r ON r.series_id = b.series_id AND r.ts = b.last_ts "
    "ORDER BY b.bk, b.series_id"
).bindparams(bindparam("ids", expanding=True))


async def aggregate_stats(
    engine: AsyncEngine,
    series_list: Sequence[Series],
    start: int,
    end: int,
    bucket: int,
    offset: int = 0,
) -> list[BucketStats]:
    """Like `aggregate`, oldest bucket first (series by id within a bucket), with the count of
    non-null values and the newest reading's ts; start >= 0 and 0 <= offset < bucket keep the
    integer division a floor on both backends. Whole minutes come from the one-minute
    rollups, the partial minutes at either end from the readings."""
    kinds = {s.id: s.kind for s in series_list}
    if not kinds:
        return []
    ids = sorted(kinds)
    lo = -(-start // MINUTE) * MINUTE  # the whole minutes inside [start, end)
    hi = end - end % MINUTE
    use_rollup = bucket % MINUTE == 0 and offset % MINUTE == 0 and lo < hi
    pieces = [(start, lo), (lo, hi), (hi, end)] if use_rollup else [(start, end)]
    found: list[BucketStats] = []
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql" and not use_rollup:
            # JIT compiling costs more than these short aggregates take; a larger work_mem
            # lets PostgreSQL hash the buckets instead of sorting them on disk (the rollups
            # and the partial minutes at a range's ends are small enough without)
            await conn.execute(text("SET LOCAL jit = off"))
            await conn.execute(text("SET LOCAL work_mem = '64MB'"))
        for i, (a, b) in enumerate(pieces):
            if a >= b:
                continue
            rolled = use_rollup and i == 1
            # few buckets: one index range per bucket beats hashing every row (2x for
            # 1-minute buckets of a 1 Hz tag over a day); same answers, starts given in µs
            probe = (engine.dialect.name == "postgresql" and not rolled
                     and len(ids) * -(-(b - a) // bucket) <= _PROBE_MAX)
            if rolled and bucket == MINUTE:
                # the rollup rows are the buckets: one index range, no grouping, no join, on
                # the driver (SQLAlchemy's result rows cost more than the query itself)
                read = _small_read(engine, _MINUTES, ids, a, b,
                                   most=len(ids) * ((b - a) // MINUTE))
                rows = read if read is not None else await _driver_fetch(conn, _MINUTES, ids, a, b)
                if "bool" not in kinds.values():  # the driver's types are the API's already
                    found += [BucketStats(sid, k, n, nv, lo_v, hi_v, mean,
                                          value if text_value is None else text_value, last_ts)
                              for sid, k, n, nv, lo_v, hi_v, mean, value, text_value, last_ts
                              in rows]
                    continue
                scale, shift = 1, 0
            else:
                query = (_AGGREGATE_ROLLUP if rolled
                         else _AGGREGATE_PROBE_PG if probe else _AGGREGATE_STATS)
                params = {"ids": ids, "start": a, "end": b, "bucket": bucket, "offset": offset}
                rows = (await conn.execute(query, params)).all()  # type: ignore[assignment]
                scale, shift = (1, 0) if probe else (bucket, offset)
            found += [
                BucketStats(sid, int(k) * scale - shift, int(n), int(nv),
                            lo_v, hi_v, float(mean) if mean is not None else None,
                            present(kinds[sid], value, text_value), last_ts)
                for sid, k, n, nv, lo_v, hi_v, mean, value, text_value, last_ts in rows
            ]
    if len(pieces) == 1:
        return found
    merged: dict[tuple[int, int], BucketStats] = {}
    for row in found:  # a bucket may have parts from the edges and from the rollup
        key = (row.start, row.series_id)
        seen = merged.get(key)
        merged[key] = row if seen is None else merge_stats(seen, row)
    return [merged[k] for k in sorted(merged)]


def merge_stats(a: BucketStats, b: BucketStats) -> BucketStats:
    """One bucket from two parts of it (the same series and start)."""
    values = a.values + b.values
    lows = [v for v in (a.min, b.min) if v is not None]
    highs = [v for v in (a.max, b.max) if v is not None]
    avg = None
    if values:
        avg = ((a.avg or 0.0) * a.values + (b.avg or 0.0) * b.values) / values
    newer = b if b.last_ts >= a.last_ts else a
    return BucketStats(a.series_id, a.start, a.count + b.count, values,
                       min(lows) if lows else None, max(highs) if highs else None, avg,
                       newer.last, newer.last_ts)


_MINUTES = (
    "SELECT series_id, minute, n, nv, lo, hi, CASE WHEN nv > 0 THEN total / nv END, last_value,"
    " last_text, last_ts FROM readings_1m WHERE {ids} AND minute >= {start} AND minute < {end}"
    " ORDER BY minute, series_id"
)


def _small_read(engine: AsyncEngine, sql: str, ids: Sequence[int], *bounds: int,
                most: int) -> list[tuple[Any, ...]] | None:
    """`_driver_fetch` on SQLite's small reader (see `small_reads`) when the result has at most
    `most` rows; None when it cannot be read that way."""
    if engine.dialect.name != "sqlite":
        return None
    query = sql.format(ids=f"series_id IN ({','.join('?' * len(ids))})", start="?", end="?")
    return small_reads.fetch(engine, query, [*ids, *bounds], most)


async def _driver_fetch(conn: AsyncConnection, sql: str, ids: Sequence[int],
                        *bounds: int) -> list[tuple[Any, ...]]:
    """A statement with `{ids}` (and `{start}`/`{end}` when bounds are given) run on the
    driver connection, as plain tuples (asyncpg's Records, which unpack, index and compare
    like tuples): SQLAlchemy's result rows cost more than the query."""
    driver = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "postgresql":
        if len(ids) == 1:  # `= $1` walks the index in order; `= ANY` would sort
            query = sql.format(ids="series_id = $1", start="$2", end="$3")
            return await driver.fetch(query, ids[0], *bounds)  # type: ignore[union-attr]
        query = sql.format(ids="series_id = ANY($1::integer[])", start="$2", end="$3")
        return await driver.fetch(query, list(ids), *bounds)  # type: ignore[union-attr]
    query = sql.format(ids=f"series_id IN ({','.join('?' * len(ids))})", start="?", end="?")
    return list(await driver.execute_fetchall(query, [*ids, *bounds]))  # type: ignore[union-attr]


_AGGREGATE_ROLLUP = text(
    "WITH b AS ("
    " SELECT series_id, (minute + :offset) / :bucket AS bk, sum(n) AS n, sum(nv) AS nv,"
    " min(lo) AS lo, max(hi) AS hi, sum(total) AS total, max(last_ts) AS last_ts"
    " FROM readings_1m WHERE series_id IN :ids AND minute >= :start AND minute < :end"
    " GROUP BY series_id, bk) "
    "SELECT b.series_id, b.bk, b.n, b.nv, b.lo, b.hi, CASE WHEN b.nv > 0 THEN b.total / b.nv END,"
    " r.last_value, r.last_text, b.last_ts FROM b "
    "JOIN readings_1m r ON r.series_id = b.series_id AND r.minute = b.last_ts - b.last_ts % 60000000 "
    "ORDER BY b.bk, b.series_id"
).bindparams(bindparam("ids", expanding=True))


_PROBE_MAX = 5000  # series x buckets up to which PostgreSQL probes bucket by bucket
_AGGREGATE_PROBE_PG = text(
    "SELECT s.id, k.b, a.n, a.nv, a.lo, a.hi, a.mean, l.value, l.text, a.last_ts "
    "FROM unnest(CAST(:ids AS INTEGER[])) s(id) CROSS JOIN generate_series("
    "CAST(:start AS BIGINT) - (CAST(:start AS BIGINT) + CAST(:offset AS BIGINT)) "
    "% CAST(:bucket AS BIGINT), CAST(:end AS BIGINT) - 1, CAST(:bucket AS BIGINT)) k(b) "
    "CROSS JOIN LATERAL (SELECT count(*) AS n, count(value) AS nv, min(value) AS lo,"
    " max(value) AS hi, avg(value) AS mean, max(ts) AS last_ts FROM readings"
    " WHERE series_id = s.id AND ts >= greatest(k.b, CAST(:start AS BIGINT))"
    " AND ts < least(k.b + CAST(:bucket AS BIGINT), CAST(:end AS BIGINT))) a "
    "JOIN readings l ON l.series_id = s.id AND l.ts = a.last_ts "
    "ORDER BY k.b, s.id"
)


def _page_sql(pg: bool, ids: list[int], start: int, end: int, limit: int,
              after: tuple[int, int] | None, columns: str) -> tuple[str, list[object]]:
    """SELECT `columns` of one page of readings (ids sorted), oldest first, and its
    parameters, in the driver's own placeholders."""
    if pg:
        # `= ANY(array)` makes PostgreSQL sort even one series; `= $1` walks the index in order
        where = ("series_id = $1" if len(ids) == 1 else "series_id = ANY($1::integer[])")
        where += " AND ts >= $2 AND ts < $3"
        args: list[object] = [ids[0] if len(ids) == 1 else ids, start, end]
        if after is not None:
            where += " AND (ts > $4 OR (ts = $4 AND series_id > $5))"
            args += [after[0], after[1]]
        limit_at = f"${len(args) + 1}"
    else:
        where = f"series_id IN ({','.join('?' * len(ids))}) AND ts >= ? AND ts < ?"
        args = [*ids, start, end]
        if after is not None:
            where += " AND (ts > ? OR (ts = ? AND series_id > ?))"
            args += [after[0], after[0], after[1]]
        limit_at = "?"
    args.append(limit)
    return (f"SELECT {columns} FROM readings WHERE {where} ORDER BY ts, series_id "
            f"LIMIT {limit_at}"), args


async def reading_rows(
    engine: AsyncEngine,
    ids: Sequence[int],
    start: int,
    end: int,
    limit: int,
    after: tuple[int, int] | None = None,
) -> list[tuple[int, int, float | None, str | None, int]]:
    """One page as plain (series_id, ts, value, text, quality) tuples, oldest first: for
    callers that format large pages themselves. Runs on the driver connection, which halves
    the cost of a 10,000-row page compared with SQLAlchemy result rows."""
    if not ids or limit <= 0:
        return []
    pg = engine.dialect.name == "postgresql"
    sql, args = _page_sql(pg, sorted(ids), start, end, limit, after,
                          "series_id, ts, value, text, quality")
    if not pg:
        rows = small_reads.fetch(engine, sql, args, limit)
        if rows is not None:
            return rows
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        if pg:  # asyncpg's Records unpack and index like tuples; copying them costs more
            return await driver.fetch(sql, *args)  # type: ignore[union-attr]
        return list(await driver.execute_fetchall(sql, args))  # type: ignore[union-attr]


@dataclass(frozen=True)
class PageColumns:
    """One page of readings as columns, oldest first. `values` holds each reading's text
    where it has one, else its number (None when it has neither); bool series still show
    0.0/1.0 here. `series_ids` is None when the page is of one series, `single`."""

    single: int | None
    series_ids: Sequence[int] | None
    ts: Sequence[int]
    values: Sequence[float | str | None]
    qualities: Sequence[int]

    def __len__(self) -> int:
        return len(self.ts)

    def series_at(self, i: int) -> int:
        return self.single if self.series_ids is None else self.series_ids[i]  # type: ignore[return-value]

    def slice(self, lo: int, hi: int) -> PageColumns:
        """Rows lo to hi (excluded)."""
        sids = None if self.series_ids is None else self.series_ids[lo:hi]
        return PageColumns(self.single, sids, self.ts[lo:hi], self.values[lo:hi],
                           self.qualities[lo:hi])


async def reading_columns(
    engine: AsyncEngine,
    ids: Sequence[int],
    start: int,
    end: int,
    limit: int,
    after: tuple[int, int] | None = None,
) -> PageColumns:
    """One page as `PageColumns`: the cheapest shape for a large JSON page. On SQLite the
    rows come without the series id when there is one series, and with text and number in
    one column; on PostgreSQL as one row of arrays (decoded in C, cheaper for the loop than
    as many records)."""
    ids = sorted(ids)
    single = ids[0] if len(ids) == 1 else None
    if not ids or limit <= 0:
        return PageColumns(single, None if single is not None else (), (), (), ())
    pg = engine.dialect.name == "postgresql"
    if pg:
        return await _pg_columns(engine, ids, start, end, limit, after)
    sid_column = "" if single is not None else "series_id, "
    # text first, as `present` shows it; a number stays a number
    sql, args = _page_sql(False, ids, start, end, limit, after,
                          f"{sid_column}ts, coalesce(text, value), quality")
    with small_reads.gc_paused():  # the row tuples are gone again before the collector looks
        rows = small_reads.fetch(engine, sql, args, limit)
        if rows is not None:
            page = _sqlite_columns(single, rows)
            del rows  # freed here, not looked at by the collector once it runs again
            return page
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        rows = list(await driver.execute_fetchall(sql, args))  # type: ignore[union-attr]
    return _sqlite_columns(single, rows)


def _sqlite_columns(single: int | None, rows: list[tuple[Any, ...]]) -> PageColumns:
    if single is not None:
        ts, values, qualities = zip(*rows, strict=True) if rows else ((), (), ())
        return PageColumns(single, None, ts, values, qualities)
    sids, ts, values, qualities = zip(*rows, strict=True) if rows else ((), (), (), ())
    return PageColumns(None, sids, ts, values, qualities)


async def _pg_columns(engine: AsyncEngine, ids: list[int], start: int, end: int, limit: int,
                      after: tuple[int, int] | None) -> PageColumns:
    single = ids[0] if len(ids) == 1 else None
    page, args = _page_sql(True, ids, start, end, limit, after,
                           "series_id, ts, value, text, quality")
    # the aggregates take the rows in the order the page's Limit gives them (checked below:
    # an ORDER BY inside each array_agg would sort the page once per column)
    sql = ("SELECT array_agg(series_id), array_agg(ts), array_agg(value), array_agg(text),"
           f" array_agg(quality) FROM ({page}) p")
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        row = await driver.fetchrow(sql, *args)  # type: ignore[union-attr]
    sids, ts, values, texts, qualities = (list(c) if c is not None else [] for c in row)
    if texts.count(None) != len(texts):
        values = [v if t is None else t for v, t in zip(values, texts, strict=True)]
    ts, sids, values, qualities = in_page_order(ts, sids, values, qualities)
    return PageColumns(single, None if single is not None else sids, ts, values, qualities)


def in_page_order(ts: list[int], sids: list[int], values: list[Any],
                  qualities: list[int]) -> tuple[list[int], list[int], list[Any], list[int]]:
    """The columns ordered by (ts, series_id). PostgreSQL's array_agg takes the rows in the
    order the page's ORDER BY ... LIMIT gives them, but the SQL standard does not promise it:
    the order is checked (cheaply) and restored if it ever differs."""
    if all(map(operator.lt, ts, ts[1:])) or all(  # rising times: ~0.3 ms; else with ids
            map(operator.le, zip(ts, sids, strict=True), zip(ts[1:], sids[1:], strict=True))):
        return ts, sids, values, qualities
    rows = sorted(zip(ts, sids, values, qualities, strict=True), key=lambda r: (r[0], r[1]))
    ts, sids, values, qualities = (list(c) for c in zip(*rows, strict=True))
    return ts, sids, values, qualities



async def latest_rows(
    engine: AsyncEngine, ids: Sequence[int]
) -> list[tuple[int, int, float | None, str | None, int]]:
    """The newest reading of each given series as plain tuples (series without readings are
    left out), from the table the writer keeps: one row per series."""
    if not ids:
        return []
    ids = sorted(ids)
    rows = _small_read(engine, _LATEST, ids, most=len(ids))
    if rows is not None:
        return rows
    async with engine.connect() as conn:
        return await _driver_fetch(conn, _LATEST, ids)


_LATEST = "SELECT series_id, ts, value, text, quality FROM latest_readings WHERE {ids}"
