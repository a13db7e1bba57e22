"""Time-bucket aggregates of raw readings: count, min, max, mean and last value per series and
bucket. Buckets are integer division of `ts`, so SQLite and PostgreSQL give the same answer;
whole minutes come from the one-minute rollups the writer keeps (plus the readings not yet moved
into them, see `schema.readings_recent`), the partial minutes at either end of a range from the
readings.

The SQL works on doubles, exact for integers up to 2^53. A bucket whose doubles may have
rounded an integer (a value, or a running sum, past 2^53: `exact.may_be_inexact`) is worked
out again from its readings' exact values in Python integers, which neither wrap nor round.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.ledger.catalogue import Series
from collector.ledger.exact import exact_value, may_be_inexact
from collector.ledger.fetch import read_on_driver, read_small
from collector.ledger.pages import present
from collector.ledger.rollup import MINUTE, minutes_of
from collector.model import Value


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is 3x slower
class BucketStats:
    """One bucket of a series: its readings' count, the min, max and mean of their `values`
    non-null values, and the newest one's value and ts (so that parts of a bucket merge)."""

    series_id: int
    start: int
    count: int
    values: int
    min: float | int | None  # an int when the bucket was worked out exactly
    max: float | int | None
    avg: float | None
    last: Value
    last_ts: int


_AGGREGATE_STATS = text(
    "WITH b AS ("
    " SELECT series_id, (ts + :offset) / :bucket AS bk, count(*) AS n, count(value) AS nv,"
    " min(value) AS lo, max(value) AS hi, avg(value) AS mean, max(ts) AS last_ts"
    " FROM readings_all WHERE series_id IN :ids AND ts >= :start AND ts < :end"
    " GROUP BY series_id, bk) "
    "SELECT b.series_id, b.bk, b.n, b.nv, b.lo, b.hi, b.mean, r.value, r.text, b.last_ts,"
    " r.value_int FROM b "
    "JOIN readings_all r ON r.series_id = b.series_id AND r.ts = b.last_ts "
    "ORDER BY b.bk, b.series_id"
).bindparams(bindparam("ids", expanding=True))


class Aggregates:
    """Time buckets of raw readings."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def minutes_with_values(self, machine: str, start: int, end: int) -> int:
        """The UTC minutes in [start, end) in which any tag of `machine` had a reading with a
        value (the minute rollups say so without reading the readings, and the few readings
        not yet moved into them)."""
        async with self.engine.connect() as conn:
            found = (await conn.execute(text(
                "SELECT count(DISTINCT minute) FROM (SELECT r.minute FROM readings_1m r "
                "JOIN series s ON s.id = r.series_id WHERE s.machine_id = :m "
                "AND r.minute >= :a AND r.minute < :b AND r.nv > 0 "
                "UNION ALL SELECT c.ts - c.ts % 60000000 FROM readings_recent c "
                "JOIN series s ON s.id = c.series_id WHERE s.machine_id = :m "
                "AND c.ts - c.ts % 60000000 >= :a AND c.ts - c.ts % 60000000 < :b "
                "AND c.value IS NOT NULL) m"), {"m": machine, "a": start, "b": end})).scalar()
        return int(found or 0)

    async def buckets(self, series_list: Sequence[Series], start: int, end: int, bucket: int,
                      offset: int = 0) -> list[BucketStats]:
        """The buckets of `bucket` µs, aligned to the epoch (shifted by `offset` µs, for day
        buckets in a local time zone), oldest first (series by id within a bucket); empty
        buckets omitted. start >= 0 and 0 <= offset < bucket keep the integer division a
        floor on both backends."""
        engine = self.engine
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
                    read = read_small(engine, _MINUTES, ids, a, b,
                                      most=len(ids) * ((b - a) // MINUTE))
                    rows = (read if read is not None
                            else await read_on_driver(conn, _MINUTES, ids, a, b))
                    if "bool" not in kinds.values():  # the driver's types are the API's already
                        found += [BucketStats(sid, k, n, nv, lo_v, hi_v, mean,
                                              value if text_value is None and last_int is None
                                              else text_value if text_value is not None
                                              else exact_value(value, last_int), last_ts)
                                  for sid, k, n, nv, lo_v, hi_v, mean, value, text_value, last_ts,
                                  last_int in rows]
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
                                present(kinds[sid], value, text_value, last_int), last_ts)
                    for sid, k, n, nv, lo_v, hi_v, mean, value, text_value, last_ts, last_int
                    in rows
                ]
        if len(pieces) > 1:
            merged: dict[tuple[int, int], BucketStats] = {}
            for row in found:  # a bucket may have parts from the edges and from the rollup
                key = (row.start, row.series_id)
                seen = merged.get(key)
                merged[key] = row if seen is None else merge_stats(seen, row)
            found = [merged[k] for k in sorted(merged)]
        if _any_inexact(found):
            async with engine.connect() as conn:
                found = await _exact(conn, found, kinds, start, end, bucket)
        _integer_bounds(found)
        return found


def _integer_bounds(found: list[BucketStats]) -> None:
    """The min and max of a bucket of an integer series as integers (5, not the 5.0 SQL's
    doubles give), when the bucket's newest reading was an integer and they are whole doubles
    no larger than 2^53 (beyond, `_exact` gave integers already, or the doubles are what was
    stored)."""
    for b in found:
        if b.last.__class__ is int:
            lo, hi = b.min, b.max
            if lo.__class__ is float and lo.is_integer() and -_EXACT <= lo <= _EXACT:
                b.min = int(lo)
            if hi.__class__ is float and hi.is_integer() and -_EXACT <= hi <= _EXACT:
                b.max = int(hi)


_EXACT = float(2**53)


def _any_inexact(found: list[BucketStats]) -> bool:
    """Whether a bucket may need `_exact`: one bound for all first, in C loops (the usual
    answer, no), then bucket by bucket."""
    if not found:
        return False
    bounds = [v for v in map(operator.attrgetter("min"), found) if v is not None]
    bounds += [v for v in map(operator.attrgetter("max"), found) if v is not None]
    if not bounds:
        return False
    largest = max(max(bounds), -min(bounds))
    if not may_be_inexact(-largest, largest, max(map(operator.attrgetter("values"), found))):
        return False
    return any(may_be_inexact(b.min, b.max, b.values) for b in found)


async def _exact(conn: AsyncConnection, found: list[BucketStats], kinds: dict[int, str | None],
                 start: int, end: int, bucket: int) -> list[BucketStats]:
    """`found` with each bucket whose doubles may have rounded an integer worked out again
    from its readings (within [start, end)) in exact arithmetic."""
    out = []
    for b in found:
        if not may_be_inexact(b.min, b.max, b.values):
            out.append(b)
            continue
        rows = (await conn.execute(_BUCKET_READINGS, {
            "sid": b.series_id, "start": max(b.start, start),
            "end": min(b.start + bucket, end)})).all()
        out.append(exact_stats(b.series_id, b.start, kinds[b.series_id], rows) or b)
    return out


def exact_stats(series_id: int, start: int, kind: str | None,
                rows: Sequence[Sequence[Any]]) -> BucketStats | None:
    """The statistics of one bucket's readings (ts, value, text, value_int), oldest first:
    integers compared and summed as Python ints (exact, never wrapping); a mean of integers
    only is their exact sum divided once. None when there are no readings."""
    if not rows:
        return None
    ints: list[int] = []
    floats: list[float] = []
    for _ts, value, _text, value_int in rows:
        if value_int is not None:
            ints.append(exact_value(value, value_int))  # type: ignore[arg-type]
        elif value is not None:
            floats.append(value)
    numbers: list[float | int] = [*ints, *floats]
    count = len(numbers)
    avg = None
    if count:
        avg = sum(ints) / count if not floats else (sum(ints) + math.fsum(floats)) / count
    last_ts, value, text_value, value_int = rows[-1]
    return BucketStats(series_id, start, len(rows), count,
                       min(numbers) if numbers else None, max(numbers) if numbers else None,
                       avg, present(kind, value, text_value, value_int), last_ts)


_BUCKET_READINGS = text(
    "SELECT ts, value, text, value_int FROM readings_all WHERE series_id = :sid AND ts >= :start"
    " AND ts < :end ORDER BY ts")


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


# the readings of `readings_recent` (not yet moved into `readings`, see `schema`) as rows of
# `readings_1m`: read in the same statement as the rollups of the same minutes, so that a move
# committed meanwhile neither hides them nor counts them twice. A few dozen seconds' worth at
# most on SQLite, nothing on PostgreSQL.
_RECENT_MINUTES = minutes_of("readings_recent", "{ids} AND ts >= {start} AND ts < {end}")
_ROLLED = (
    "SELECT series_id, minute, n, nv, lo, hi, total, last_ts, last_value, last_text, last_int"
    " FROM readings_1m WHERE {ids} AND minute >= {start} AND minute < {end} "
    f"UNION ALL {_RECENT_MINUTES}"
)

# one row per series and minute, or two when a minute has readings in both tables (`buckets`
# merges them)
_MINUTES = (
    "SELECT series_id, minute, n, nv, lo, hi, CASE WHEN nv > 0 THEN total / nv END, last_value,"
    f" last_text, last_ts, last_int FROM ({_ROLLED}) m ORDER BY minute, series_id"
)


_AGGREGATE_ROLLUP = text(
    "WITH m AS (" + _ROLLED.format(ids="series_id IN :ids", start=":start", end=":end") + "), "
    "b AS ("
    " SELECT series_id, (minute + :offset) / :bucket AS bk, sum(n) AS n, sum(nv) AS nv,"
    " min(lo) AS lo, max(hi) AS hi, sum(total) AS total, max(last_ts) AS last_ts"
    " FROM m GROUP BY series_id, bk) "
    "SELECT b.series_id, b.bk, b.n, b.nv, b.lo, b.hi, CASE WHEN b.nv > 0 THEN b.total / b.nv END,"
    " r.last_value, r.last_text, b.last_ts, r.last_int FROM b "
    "JOIN m r ON r.series_id = b.series_id AND r.last_ts = b.last_ts "
    "ORDER BY b.bk, b.series_id"
).bindparams(bindparam("ids", expanding=True))


_PROBE_MAX = 5000  # series x buckets up to which PostgreSQL probes bucket by bucket
_AGGREGATE_PROBE_PG = text(
    "SELECT s.id, k.b, a.n, a.nv, a.lo, a.hi, a.mean, l.value, l.text, a.last_ts, l.value_int "
    "FROM unnest(CAST(:ids AS INTEGER[])) s(id) CROSS JOIN generate_series("
    "CAST(:start AS BIGINT) - (CAST(:start AS BIGINT) + CAST(:offset AS BIGINT)) "
    "% CAST(:bucket AS BIGINT), CAST(:end AS BIGINT) - 1, CAST(:bucket AS BIGINT)) k(b) "
    "CROSS JOIN LATERAL (SELECT count(*) AS n, count(value) AS nv, min(value) AS lo,"
    " max(value) AS hi, avg(value) AS mean, max(ts) AS last_ts FROM readings_all"
    " WHERE series_id = s.id AND ts >= greatest(k.b, CAST(:start AS BIGINT))"
    " AND ts < least(k.b + CAST(:bucket AS BIGINT), CAST(:end AS BIGINT))) a "
    "JOIN readings_all l ON l.series_id = s.id AND l.ts = a.last_ts "
    "ORDER BY k.b, s.id"
)
