"""Pages of raw readings. One `PageQuery` (series, time range, size, the key to resume after)
is read as columns (the cheapest shape for a large JSON page), as points (streamed, a chunk of
rows per query) or for the key its last row has when more follow (a CSV's next cursor,
announced before its rows).

A page walks the (series_id, ts) primary key and resumes after the (ts, series_id) of the last
row seen (keyset paging, never OFFSET); its rows come through the driver connection or, on
SQLite, the direct reader (`small_reads`), which halves the cost of a 10,000-row page compared
with SQLAlchemy result rows.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.ledger import small_reads
from collector.ledger.catalogue import Series
from collector.ledger.exact import exact_value
from collector.model import Quality, Value


@dataclass(frozen=True)
class Point:
    series_id: int
    ts: int
    value: Value
    quality: Quality
    status: int | None = None  # the source's status code, when it gave one


# series_id, ts, value, text, quality, value_int (exact.py), status
Row = tuple[int, int, float | None, str | None, int, int | bytes | None, int | None]
ROW_COLUMNS = "series_id, ts, value, text, quality, value_int, status"


def present(kind: str | None, value: float | None, text_value: str | None,
            value_int: int | bytes | None = None) -> Value:
    """A stored value as the API shows it: text, a bool for bool series, the exact integer
    of an integer reading, else the number."""
    if text_value is not None:
        return text_value
    if value_int is not None:
        return exact_value(value, value_int)
    if value is None:
        return None
    if kind == "bool":
        return value != 0.0
    return value


@dataclass(frozen=True)
class PageQuery:
    """The readings of the series `ids` with start <= ts < end, oldest first (by ts, then
    series id), at most `limit`, after the (ts, series_id) key `after`. `bools`: the series
    whose values are true/false."""

    ids: tuple[int, ...]
    start: int
    end: int
    limit: int
    after: tuple[int, int] | None = None
    bools: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(sorted(set(self.ids))))

    @classmethod
    def of(cls, series: Iterable[Series], start: int, end: int, limit: int,
           after: tuple[int, int] | None = None) -> PageQuery:
        """The page of these series (those of kind bool marked)."""
        chosen = list(series)
        return cls(tuple(s.id for s in chosen), start, end, limit, after,
                   frozenset(s.id for s in chosen if s.kind == "bool"))


class Pages:
    """Pages of raw readings, read three ways."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def columns(self, query: PageQuery) -> PageColumns:
        """The page as `PageColumns`: the cheapest shape for a large JSON page. On SQLite the
        rows come without the series id when there is one series, and with text and number
        in one column; on PostgreSQL as one row of arrays (decoded in C, cheaper for the loop
        than as many records)."""
        return await _columns(self.engine, query)

    async def points(self, query: PageQuery, chunk: int = 5000) -> AsyncIterator[Point]:
        """The page's readings as they come, `chunk` rows per query (on SQLite read
        directly: a long CSV export then goes at its own pace even while the loop is busy)."""
        ids, remaining, cursor = list(query.ids), query.limit, query.after
        if not ids or remaining <= 0:
            return
        bools = query.bools
        while remaining > 0:
            n = min(chunk, remaining)
            rows = await _rows(self.engine, ids, query.start, query.end, n, cursor)
            for sid, ts, value, text_value, quality, value_int, status in rows:
                yield Point(sid, ts, present("bool" if sid in bools else None, value, text_value,
                                             value_int), Quality(quality), status)
            if len(rows) < n:
                return
            remaining -= len(rows)
            cursor = (rows[-1][1], rows[-1][0])

    async def end(self, query: PageQuery) -> tuple[int, int] | None:
        """The (ts, series_id) of the page's last row when more rows follow it, else None:
        the key the next page resumes after, known before the page's rows are read."""
        if not query.ids or query.limit <= 0:
            return None
        where, params = _range_filter(query.ids, query.start, query.end, query.after)
        params["skip"] = query.limit - 1
        statement = text(
            f"SELECT ts, series_id FROM readings_all WHERE {where} "
            f"ORDER BY {_order(query.ids)} LIMIT 2 OFFSET :skip"
        ).bindparams(bindparam("ids", expanding=True))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(statement, params)).all()
        return (rows[0][0], rows[0][1]) if len(rows) == 2 else None


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
    return (f"SELECT {columns} FROM readings_all WHERE {where} ORDER BY {_order(ids)} "
            f"LIMIT {limit_at}"), args


def _order(ids: Sequence[int]) -> str:
    """The page order: (ts, series_id), or for one series just ts, which lets SQLite merge
    the two tables of `readings_all` in key order instead of sorting what they hold (4x the
    time for a page of 10,000 readings)."""
    return "ts" if len(ids) == 1 else "ts, series_id"


async def page_rows(engine: AsyncEngine, query: PageQuery) -> list[Row]:
    """The page as plain `Row` tuples, oldest first, for a caller that writes rows out
    itself."""
    return await _rows(engine, list(query.ids), query.start, query.end, query.limit, query.after)


async def _rows(engine: AsyncEngine, ids: list[int], start: int, end: int, limit: int,
                after: tuple[int, int] | None) -> list[Row]:
    if not ids or limit <= 0:
        return []
    pg = engine.dialect.name == "postgresql"
    sql, args = _page_sql(pg, ids, start, end, limit, after, ROW_COLUMNS)
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
    where it has one, else its exact integer, else its number (None when it has neither); an
    unsigned integer of 2^63 or more may show as its decimal digits (bytes, `exact`); bool
    series still show 0.0/1.0 here. `series_ids` is None when the page is of one series,
    `single`. `statuses` is None when no reading of the page has a status code."""

    single: int | None
    series_ids: Sequence[int] | None
    ts: Sequence[int]
    values: Sequence[float | int | bytes | str | None]
    qualities: Sequence[int]
    statuses: Sequence[int | None] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def series_at(self, i: int) -> int:
        return self.single if self.series_ids is None else self.series_ids[i]  # type: ignore[return-value]

    def slice(self, lo: int, hi: int) -> PageColumns:
        """Rows lo to hi (excluded)."""
        sids = None if self.series_ids is None else self.series_ids[lo:hi]
        statuses = None if self.statuses is None else self.statuses[lo:hi]
        return PageColumns(self.single, sids, self.ts[lo:hi], self.values[lo:hi],
                           self.qualities[lo:hi], statuses)


async def _columns(engine: AsyncEngine, query: PageQuery) -> PageColumns:
    ids = list(query.ids)
    start, end, limit, after = query.start, query.end, query.limit, query.after
    single = ids[0] if len(ids) == 1 else None
    if not ids or limit <= 0:
        return PageColumns(single, None if single is not None else (), (), (), ())
    pg = engine.dialect.name == "postgresql"
    if pg:
        return await _pg_columns(engine, ids, start, end, limit, after)
    sid_column = "" if single is not None else "series_id, "
    # text first, as `present` shows it, then the exact integer; a number stays a number
    sql, args = _page_sql(False, ids, start, end, limit, after,
                          f"{sid_column}ts, coalesce(text, value_int, value), quality, status")
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
        ts, values, qualities, statuses = zip(*rows, strict=True) if rows else ((), (), (), ())
        return PageColumns(single, None, ts, values, qualities, _statuses(statuses))
    sids, ts, values, qualities, statuses = (zip(*rows, strict=True) if rows
                                             else ((), (), (), (), ()))
    return PageColumns(None, sids, ts, values, qualities, _statuses(statuses))


def _statuses(statuses: Sequence[int | None]) -> Sequence[int | None] | None:
    """The status column, or None when no reading has a status (the usual page)."""
    return None if statuses.count(None) == len(statuses) else statuses


async def _pg_columns(engine: AsyncEngine, ids: list[int], start: int, end: int, limit: int,
                      after: tuple[int, int] | None) -> PageColumns:
    single = ids[0] if len(ids) == 1 else None
    page, args = _page_sql(True, ids, start, end, limit, after, ROW_COLUMNS)
    # the aggregates take the rows in the order the page's Limit gives them (checked below:
    # an ORDER BY inside each array_agg would sort the page once per column)
    sql = ("SELECT array_agg(series_id), array_agg(ts), array_agg(value), array_agg(text),"
           " array_agg(quality), array_agg(value_int), array_agg(status)"
           f" FROM ({page}) p")
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        row = await driver.fetchrow(sql, *args)  # type: ignore[union-attr]
    sids, ts, values, texts, qualities, ints, statuses = (
        list(c) if c is not None else [] for c in row)
    if ints.count(None) != len(ints):
        values = list(map(exact_value, values, ints))
    if texts.count(None) != len(texts):
        values = [v if t is None else t for v, t in zip(values, texts, strict=True)]
    ts, sids, values, qualities, statuses = in_page_order(ts, sids, values, qualities, statuses)
    return PageColumns(single, None if single is not None else sids, ts, values, qualities,
                       _statuses(statuses))


def in_page_order(ts: list[int], sids: list[int], values: list[Any], qualities: list[int],
                  statuses: list[int | None]) -> tuple[list[int], list[int], list[Any],
                                                       list[int], list[int | None]]:
    """The columns ordered by (ts, series_id). PostgreSQL's array_agg takes the rows in the
    order the page's ORDER BY ... LIMIT gives them, but the SQL standard does not promise it:
    the order is checked (cheaply) and restored if it ever differs."""
    if all(map(operator.lt, ts, ts[1:])) or all(  # rising times: ~0.3 ms; else with ids
            map(operator.le, zip(ts, sids, strict=True), zip(ts[1:], sids[1:], strict=True))):
        return ts, sids, values, qualities, statuses
    rows = sorted(zip(ts, sids, values, qualities, statuses, strict=True),
                  key=lambda r: (r[0], r[1]))
    ts, sids, values, qualities, statuses = (list(c) for c in zip(*rows, strict=True))
    return ts, sids, values, qualities, statuses
