"""The production ledger's tables: what derivation commits, and the reads figures are made of.

Derivation commits in one transaction what it produced (closed state intervals, part counts,
their minute sums, energy) together with its checkpoints, so the counts and the counter
value they came from are durable together. The same SQL runs on SQLite (on a connection of
its own on the event loop's thread, like the readings' writer) and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.ledger import small_reads
from collector.ledger.sqlite_batch import SqliteBatchWriter
from collector.model import now_us

MINUTE = 60_000_000
HOUR = 3_600_000_000

_INTERVAL = ("INSERT INTO state_intervals (machine_id, start_ts, end_ts, state) "
             "VALUES (:m, :s, :e, :st) ON CONFLICT (machine_id, start_ts) "
             "DO UPDATE SET end_ts = excluded.end_ts, state = excluded.state")
_COUNT = ("INSERT INTO part_counts (machine_id, ts, total, good, reject) "
          "VALUES (:m, :ts, :t, :g, :r) ON CONFLICT (machine_id, ts) "
          "DO UPDATE SET total = excluded.total, good = excluded.good, reject = excluded.reject")
_MINUTE = ("INSERT INTO production_1m (machine_id, minute, total, good, reject, energy_kwh) "
           "VALUES (:m, :min, :t, :g, :r, :e) ON CONFLICT (machine_id, minute) DO UPDATE SET "
           "total = production_1m.total + excluded.total, "
           "good = production_1m.good + excluded.good, "
           "reject = production_1m.reject + excluded.reject, "
           "energy_kwh = production_1m.energy_kwh + excluded.energy_kwh")
_HOUR = ("INSERT INTO production_1h (machine_id, hour, total, good, reject, energy_kwh) "
         "VALUES (:m, :h, :t, :g, :r, :e) ON CONFLICT (machine_id, hour) DO UPDATE SET "
         "total = production_1h.total + excluded.total, "
         "good = production_1h.good + excluded.good, "
         "reject = production_1h.reject + excluded.reject, "
         "energy_kwh = production_1h.energy_kwh + excluded.energy_kwh")
_CHECKPOINT = ("INSERT INTO production_checkpoints (machine_id, upto, state, since, data, "
               "updated_at) VALUES (:m, :upto, :st, :since, :data, :at) "
               "ON CONFLICT (machine_id) DO UPDATE SET upto = excluded.upto, "
               "state = excluded.state, since = excluded.since, data = excluded.data, "
               "updated_at = excluded.updated_at")
_NOTE = ("INSERT INTO downtime_notes (machine_id, start_ts, reason, comment, updated_at) "
         "VALUES (:m, :s, :reason, :comment, :at) ON CONFLICT (machine_id, start_ts) "
         "DO UPDATE SET reason = excluded.reason, comment = excluded.comment, "
         "updated_at = excluded.updated_at")
_REWIND = (
    # an interval reaching past the end of what is derived again keeps its part after it
    "UPDATE state_intervals SET start_ts = :until WHERE machine_id = :m AND start_ts >= :states "
    "AND start_ts < :until AND end_ts > :until",
    "DELETE FROM state_intervals WHERE machine_id = :m AND start_ts >= :states "
    "AND start_ts < :until",
    "DELETE FROM part_counts WHERE machine_id = :m AND ts >= :counts AND ts < :until",
    "DELETE FROM production_1m WHERE machine_id = :m AND minute >= :counts AND minute < :until",
    # the hours touched are summed again from the minutes that stay
    "DELETE FROM production_1h WHERE machine_id = :m AND hour >= :h0 AND hour < :h1",
    "INSERT INTO production_1h (machine_id, hour, total, good, reject, energy_kwh) "
    "SELECT machine_id, minute - minute % 3600000000, sum(total), sum(good), sum(reject), "
    "sum(energy_kwh) FROM production_1m WHERE machine_id = :m AND minute >= :h0 "
    "AND minute < :h1 GROUP BY 1, 2",
)
FOREVER = 2**62
_BULK = re.compile(r"INSERT INTO (\w+) \(([^)]*)\) VALUES \(([^)]*)\) "
                   r"(ON CONFLICT \(([^)]*)\) .*)", re.S)
_BULK_ROWS = 2000
_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_SPANS_PER_READ = 60  # UNION ALL terms in one statement (SQLite allows 500)
_MACHINES_PER_READ = 25  # a day of a busy machine is a few hundred intervals: ~10,000 rows a read
_INTERVALS = (
    "SELECT start_ts, end_ts, state FROM state_intervals WHERE machine_id = :m "
    "AND start_ts < :end AND start_ts >= coalesce((SELECT max(start_ts) FROM state_intervals "
    "WHERE machine_id = :m AND start_ts <= :start), :start) ORDER BY start_ts")


@dataclass
class ProductionBatch:
    """What one derivation commit writes."""

    # machine -> (first interval start to drop, first count time to drop, end of what is
    # derived again; minute-aligned): what derivation writes again in place
    rewind: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    intervals: list[tuple[str, int, int, str]] = field(default_factory=list)
    counts: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    energy: list[tuple[str, int, float]] = field(default_factory=list)
    checkpoints: list[tuple[str, int, str | None, int | None, dict[str, Any]]] = field(
        default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rewind or self.intervals or self.counts or self.energy
                    or self.checkpoints)


@dataclass(frozen=True)
class Checkpoint:
    machine: str
    upto: int
    state: str | None
    since: int | None
    data: dict[str, Any]
    updated_at: int


@dataclass
class Sums:
    total: int = 0
    good: int = 0
    reject: int = 0
    energy_kwh: float = 0.0

    def add(self, other: Sums) -> None:
        self.total += other.total
        self.good += other.good
        self.reject += other.reject
        self.energy_kwh += other.energy_kwh


class ProductionStore:
    """Reads and writes the production tables of one ledger."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sqlite = (SqliteBatchWriter(engine.url.database or "")
                        if self.dialect == "sqlite" else None)
        self.commits = 0  # grows with every commit: answers built from these tables compare it
        # PostgreSQL: the connection commits go through, kept between them (a pool checkout
        # pings the server and resets the connection: more than a small commit costs)
        self._held: AsyncConnection | None = None
        self._driver: Any = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()
        await self._release()

    async def _release(self) -> None:
        held, self._held, self._driver = self._held, None, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.close()

    # writes ------------------------------------------------------------------------------------
    async def commit(self, batch: ProductionBatch) -> None:
        statements = _statements(batch)
        if statements:
            await self.commit_statements(statements)

    async def set_note(self, machine: str, start: int, reason: str | None,
                       comment: str | None) -> None:
        row = {"m": machine, "s": start, "reason": reason, "comment": comment, "at": now_us()}
        await self.commit_statements([(_NOTE, [row])])

    async def commit_statements(self, statements: list[tuple[str, list[dict[str, Any]]]]) -> None:
        if self._sqlite is not None:
            def work(conn: Any) -> None:
                for sql, rows in statements:
                    conn.executemany(sql, rows)
            await self._sqlite.transaction(work)
        else:  # on asyncpg itself: SQLAlchemy's layer took most of the time of these commits
            async with self._lock:
                try:
                    if self._driver is None:
                        self._held = await self.engine.connect()
                        self._driver = (await self._held.get_raw_connection()).driver_connection
                    async with self._driver.transaction():
                        for sql, rows in statements:
                            await _pg_execute(self._driver, sql, rows)
                except BaseException:  # a connection that failed once is not used again
                    await self._release()
                    raise
        self.commits += 1

    # reads -------------------------------------------------------------------------------------
    async def fetch(self, sql: str, params: dict[str, Any], rows: int = 5000) -> list[Any]:
        """Rows of a read; on SQLite directly on this thread when the result is small."""
        found = small_reads.fetch(self.engine, sql, params, rows)
        if found is not None:
            return found
        async with self.engine.connect() as conn:
            if self.dialect != "postgresql":
                return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
            # asyncpg's Records unpack and index like tuples; SQLAlchemy's rows cost more
            driver: Any = (await conn.get_raw_connection()).driver_connection
            query, names = _numbered(sql)
            return list(await driver.fetch(query, *[params[n] for n in names]))

    async def intervals(self, machine: str, start: int, end: int) -> list[tuple[int, int, str]]:
        """Closed state intervals overlapping [start, end), oldest first (not clipped)."""
        rows = await self.fetch(_INTERVALS, {"m": machine, "start": start, "end": end}, 20_000)
        return [(int(s), int(e), str(st)) for s, e, st in rows if e > start]

    async def first_interval_start(self, machine: str) -> int | None:
        rows = await self.fetch("SELECT min(start_ts) FROM state_intervals WHERE machine_id = :m",
                                {"m": machine}, 1)
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def checkpoints(self, machines: Sequence[str] | None = None) -> dict[str, Checkpoint]:
        sql = "SELECT machine_id, upto, state, since, data, updated_at FROM production_checkpoints"
        params: dict[str, Any] = {}
        if machines is not None:
            if not machines:
                return {}
            sql += f" WHERE machine_id IN ({_bind(machines, params)})"
        rows = await self.fetch(sql, params, 10_000)
        return {m: Checkpoint(m, int(upto), state, since, json.loads(data), int(at))
                for m, upto, state, since, data, at in rows}

    async def last_running_end(self, machine: str, before: int) -> int | None:
        """The end of the machine's last running interval that started before `before`."""
        rows = await self.fetch(
            "SELECT end_ts FROM state_intervals WHERE machine_id = :m AND start_ts < :t "
            "AND state = 'running' ORDER BY start_ts DESC LIMIT 1", {"m": machine, "t": before}, 1)
        return int(rows[0][0]) if rows else None

    async def next_running_start(self, machine: str, after: int) -> int | None:
        """The start of the machine's first running interval at or after `after`."""
        rows = await self.fetch(
            "SELECT start_ts FROM state_intervals WHERE machine_id = :m AND start_ts >= :t "
            "AND state = 'running' ORDER BY start_ts LIMIT 1", {"m": machine, "t": after}, 1)
        return int(rows[0][0]) if rows else None

    # reads of many machines at once (the daily ledger: a few queries instead of a few per machine)
    async def extents(self, machines: Sequence[str], start: int,
                      stop: int) -> dict[str, tuple[int | None, int | None, int | None]]:
        """Per machine (first interval's start, `last_running_end(start)`,
        `next_running_start(stop)`), each None when there is none."""
        out: dict[str, tuple[int | None, int | None, int | None]] = {}
        for chunk in _chunks(machines, _MACHINES_PER_READ):
            params: dict[str, Any] = {"t": start, "u": stop}
            values = _bind(chunk, params, "({})")
            rows = await self.fetch(
                "SELECT v.column1, "
                "(SELECT min(start_ts) FROM state_intervals WHERE machine_id = v.column1), "
                "(SELECT end_ts FROM state_intervals WHERE machine_id = v.column1 "
                "AND start_ts < :t AND state = 'running' ORDER BY start_ts DESC LIMIT 1), "
                "(SELECT start_ts FROM state_intervals WHERE machine_id = v.column1 "
                "AND start_ts >= :u AND state = 'running' ORDER BY start_ts LIMIT 1) "
                f"FROM (VALUES {values}) AS v", params, len(chunk))
            for machine, first, before, after in rows:
                out[str(machine)] = (_int(first), _int(before), _int(after))
        return out

    async def intervals_of(self, windows: dict[str, tuple[int, int]]
                           ) -> dict[str, list[tuple[int, int, str]]]:
        """`intervals(machine, start, end)` of each machine's (start, end) window."""
        out: dict[str, list[tuple[int, int, str]]] = {m: [] for m in windows}
        reads = []
        for chunk in _chunks(list(windows), _MACHINES_PER_READ):
            params: dict[str, Any] = {}
            parts = []
            for i, machine in enumerate(chunk):
                params[f"m{i}"], (params[f"a{i}"], params[f"b{i}"]) = machine, windows[machine]
                parts.append(
                    f"SELECT machine_id, start_ts, end_ts, state FROM state_intervals "
                    f"WHERE machine_id = :m{i} AND start_ts < :b{i} AND start_ts >= coalesce("
                    f"(SELECT max(start_ts) FROM state_intervals WHERE machine_id = :m{i} "
                    f"AND start_ts <= :a{i}), :a{i})")
            reads.append(self.fetch(" UNION ALL ".join(parts), params, small_reads.MAX_ROWS))
        # PostgreSQL: on connections of their own at once (SQLite reads them one by one)
        for rows in await asyncio.gather(*reads):
            for machine, group in itertools.groupby(rows, key=_first):  # each machine's together
                out[machine] += [(s, e, state) for _, s, e, state in group]
        for machine, found in out.items():
            found.sort()
            if found and found[0][1] <= windows[machine][0]:  # ended before the window
                del found[0]
        return out

    async def notes_of(self, windows: dict[str, tuple[int, int]]
                       ) -> dict[str, dict[int, tuple[str | None, str | None]]]:
        """`notes(machine, start, end)` of each machine's (start, end) window."""
        out: dict[str, dict[int, tuple[str | None, str | None]]] = {m: {} for m in windows}
        if not windows:
            return out
        params: dict[str, Any] = {"a": min(a for a, _ in windows.values()),
                                  "b": max(b for _, b in windows.values())}
        rows = await self.fetch(
            "SELECT machine_id, start_ts, reason, comment FROM downtime_notes WHERE machine_id "
            f"IN ({_bind(list(windows), params)}) AND start_ts >= :a AND start_ts < :b",
            params, 20_000)
        for machine, s, reason, comment in rows:
            a, b = windows[machine]
            if a <= s < b:
                out[machine][int(s)] = (reason, comment)
        return out

    async def sums(self, machine: str, start: int, end: int) -> Sums:
        """Parts and energy in [start, end): whole minutes from the minute sums, the rest
        from the counts themselves (energy of a partial minute pro rata)."""
        first = -(-start // MINUTE) * MINUTE
        last = end // MINUTE * MINUTE
        out = Sums()
        if first >= last:  # no whole minute inside
            out.add(await self._exact(machine, start, end))
            out.energy_kwh = await self._energy_part(machine, start, end)
            return out
        found = await self.sums_by_edges([machine], [first, last])
        out.add(found.get((machine, 0)) or Sums())
        if start < first:
            out.add(await self._exact(machine, start, first))
            out.energy_kwh += await self._energy_part(machine, start, first)
        if last < end:
            out.add(await self._exact(machine, last, end))
            out.energy_kwh += await self._energy_part(machine, last, end)
        return out

    async def partial_minute(self, machines: Sequence[str], start: int, end: int
                             ) -> dict[str, Sums]:
        """Parts and energy of each machine in [start, end), a part of one minute starting at
        its beginning (the minute a day's open shift is in now): the counts themselves and
        the minute's energy pro rata, for all machines in one read; missing keys are zero."""
        out: dict[str, Sums] = defaultdict(Sums)
        if not machines or end <= start:
            return out
        names: dict[str, Any] = {}
        listed = _bind(machines, names)
        rows = await self.fetch(
            "SELECT machine_id, sum(total), sum(good), sum(reject), 0.0 FROM part_counts "
            f"WHERE machine_id IN ({listed}) AND ts >= :a AND ts < :b GROUP BY machine_id "
            "UNION ALL SELECT machine_id, 0, 0, 0, energy_kwh FROM production_1m "
            f"WHERE machine_id IN ({listed}) AND minute = :a",
            {**names, "a": start, "b": end}, 2 * len(machines))
        share = (end - start) / MINUTE
        for machine, total, good, reject, energy in rows:
            out[machine].add(Sums(int(total), int(good), int(reject), float(energy) * share))
        return out

    async def _exact(self, machine: str, start: int, end: int) -> Sums:
        rows = await self.fetch(
            "SELECT coalesce(sum(total), 0), coalesce(sum(good), 0), coalesce(sum(reject), 0) "
            "FROM part_counts WHERE machine_id = :m AND ts >= :a AND ts < :b",
            {"m": machine, "a": start, "b": end}, 1)
        total, good, reject = rows[0]
        return Sums(int(total), int(good), int(reject))

    async def _energy_part(self, machine: str, start: int, end: int) -> float:
        """Energy of the part [start, end) of one minute: that minute's energy pro rata."""
        minute = start // MINUTE * MINUTE
        rows = await self.fetch("SELECT energy_kwh FROM production_1m WHERE machine_id = :m "
                                "AND minute = :min", {"m": machine, "min": minute}, 1)
        if not rows:
            return 0.0
        return float(rows[0][0]) * (min(end, minute + MINUTE) - start) / MINUTE

    async def sums_by_edges(self, machines: Sequence[str],
                            edges: Sequence[int]) -> dict[tuple[str, int], Sums]:
        """Parts and energy of each machine between consecutive minute-aligned `edges`:
        {(machine, i): sums of [edges[i], edges[i+1])}; missing keys are zero. Whole hours
        come from the hour sums, the minutes at either end from the minute sums; one grouped
        range read per piece, in index order (a CASE over the spans in one GROUP BY would sort
        every row first)."""
        out: dict[tuple[str, int], Sums] = defaultdict(Sums)
        if len(edges) < 2 or not machines:
            return out
        names: dict[str, Any] = {}
        listed = _bind(machines, names)
        pieces = [(k, *piece) for k in range(len(edges) - 1)
                  for piece in _pieces(edges[k], edges[k + 1])]
        for at in range(0, len(pieces), _SPANS_PER_READ):
            params = dict(names)
            parts = []
            for n, (k, table, column, lo, hi) in enumerate(pieces[at:at + _SPANS_PER_READ]):
                params[f"a{n}"], params[f"b{n}"] = lo, hi
                parts.append(f"SELECT machine_id, {k}, sum(total), sum(good), sum(reject), "
                             f"sum(energy_kwh) FROM {table} WHERE machine_id IN ({listed}) "
                             f"AND {column} >= :a{n} AND {column} < :b{n} GROUP BY machine_id")
            rows = await self.fetch(" UNION ALL ".join(parts), params, 20_000)
            for machine, k, total, good, reject, energy in rows:
                out[(machine, int(k))].add(Sums(int(total), int(good), int(reject),
                                                float(energy)))
        return out

    async def count_times(self, machine: str, start: int, end: int) -> list[tuple[int, int, int, int]]:
        """Every count event (ts, total, good, reject) in [start, end)."""
        rows = await self.fetch(
            "SELECT ts, total, good, reject FROM part_counts WHERE machine_id = :m "
            "AND ts >= :a AND ts < :b ORDER BY ts", {"m": machine, "a": start, "b": end}, 200_000)
        return [(int(a), int(b), int(c), int(d)) for a, b, c, d in rows]

    async def notes(self, machine: str, start: int, end: int) -> dict[int, tuple[str | None, str | None]]:
        rows = await self.fetch(
            "SELECT start_ts, reason, comment FROM downtime_notes WHERE machine_id = :m "
            "AND start_ts >= :a AND start_ts < :b", {"m": machine, "a": start, "b": end}, 20_000)
        return {int(s): (reason, comment) for s, reason, comment in rows}


async def _pg_execute(driver: Any, sql: str, rows: list[dict[str, Any]]) -> None:
    """One statement for many rows on asyncpg: a large upsert (a rebuild's parts, a
    month of minutes) COPYed into a staging table and inserted from there in one statement,
    3x faster than a statement per row; anything else row by row."""
    query, names = _numbered(sql)
    records = [[row[n] for n in names] for row in rows]
    bulk = _BULK.match(sql) if len(records) >= _BULK_ROWS else None
    if bulk is not None:
        table, columns, values, conflict, keys = bulk.groups()
        order = [p.strip().lstrip(":") for p in values.split(",")]
        cols = [c.strip() for c in columns.split(",")]
        at = [cols.index(k.strip()) for k in keys.split(",")]
        tuples = [tuple(row[n] for n in order) for row in rows]
        if len({tuple(t[i] for i in at) for t in tuples}) == len(tuples):  # else: last wins
            stage = f"stage_{table}"
            await driver.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                                 f"(LIKE {table}) ON COMMIT DELETE ROWS")
            await driver.copy_records_to_table(stage, records=tuples, columns=cols)
            await driver.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} "
                                 f"FROM {stage} {conflict}")
            return
    await driver.executemany(query, records)


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """A statement with `:name` parameters as asyncpg's `$n`, and the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(names)


def _pieces(start: int, end: int) -> list[tuple[str, str, int, int]]:
    """(table, time column, from, to) covering minute-aligned [start, end): the whole hours
    from the hour sums, the rest from the minute sums."""
    first, last = -(-start // HOUR) * HOUR, end // HOUR * HOUR
    if first >= last:
        return [("production_1m", "minute", start, end)]
    out = [("production_1h", "hour", first, last)]
    if start < first:
        out.insert(0, ("production_1m", "minute", start, first))
    if last < end:
        out.append(("production_1m", "minute", last, end))
    return out


def _bind(machines: Sequence[str], params: dict[str, Any], each: str = "{}") -> str:
    """Machine ids as parameters `m0, m1, ...` in `params`; their placeholders, each in
    `each`, joined by commas (an IN list, a VALUES list)."""
    marks = []
    for i, machine in enumerate(machines):
        params[f"m{i}"] = machine
        marks.append(each.format(f":m{i}"))
    return ", ".join(marks)


def _json(data: dict[str, Any]) -> str:
    """A checkpoint as JSON (orjson: a hundred of them a second; the standard library for
    what orjson refuses, integers past 64 bits)."""
    try:
        return orjson.dumps(data).decode()
    except TypeError:
        return json.dumps(data, separators=(",", ":"))


def _first(row: Sequence[Any]) -> Any:
    return row[0]


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _statements(batch: ProductionBatch) -> list[tuple[str, list[dict[str, Any]]]]:
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for machine, (states_from, counts_from, until) in batch.rewind.items():
        row = {"m": machine, "states": states_from, "counts": counts_from, "until": until,
               "h0": counts_from // HOUR * HOUR, "h1": -(-until // HOUR) * HOUR}
        out += [(sql, [row]) for sql in _REWIND]
    if batch.intervals:
        out.append((_INTERVAL, [{"m": m, "s": s, "e": e, "st": st}
                                for m, s, e, st in batch.intervals]))
    minutes: dict[tuple[str, int], list[float]] = {}
    if batch.counts:
        out.append((_COUNT, [{"m": m, "ts": ts, "t": t, "g": g, "r": r}
                             for m, ts, t, g, r in batch.counts]))
        for m, ts, t, g, r in batch.counts:
            acc = minutes.setdefault((m, ts // MINUTE * MINUTE), [0, 0, 0, 0.0])
            acc[0] += t
            acc[1] += g
            acc[2] += r
    for m, ts, kwh in batch.energy:
        minutes.setdefault((m, ts // MINUTE * MINUTE), [0, 0, 0, 0.0])[3] += kwh
    if minutes:
        out.append((_MINUTE, [{"m": m, "min": minute, "t": int(a[0]), "g": int(a[1]),
                               "r": int(a[2]), "e": float(a[3])}
                              for (m, minute), a in sorted(minutes.items())]))
        hours: dict[tuple[str, int], list[float]] = {}
        for (m, minute), a in minutes.items():
            acc = hours.setdefault((m, minute // HOUR * HOUR), [0, 0, 0, 0.0])
            for i in range(4):
                acc[i] += a[i]
        out.append((_HOUR, [{"m": m, "h": hour, "t": int(a[0]), "g": int(a[1]),
                             "r": int(a[2]), "e": float(a[3])}
                            for (m, hour), a in sorted(hours.items())]))
    if batch.checkpoints:
        at = now_us()
        out.append((_CHECKPOINT, [{"m": m, "upto": upto, "st": st, "since": since,
                                   "data": _json(data), "at": at}
                                  for m, upto, st, since, data in batch.checkpoints]))
    return out
