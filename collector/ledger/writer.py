"""The hot path into the ledger: readings → rows, inserted idempotently in one statement.

Series ids are cached in memory, so a batch costs one insert: on SQLite a few multi-row
`INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING` statements into `readings_recent` on
the writer's own connection, moved into `readings` in bulk every minute (see
`sqlite_batch`), on PostgreSQL a binary COPY (with a fallback through a
staging table and `ON CONFLICT DO NOTHING` when some rows are already there); then, in the
same transaction, one upsert each for the latest values and the minute rollups. Rows go in
key order: (series_id, ts) is the clustered key on SQLite and the primary index on
PostgreSQL, so sorted rows touch each index page once per batch. The key also makes a
replayed batch insert nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.ledger import rollup
from collector.ledger.exact import INT64_END, INT64_MIN, stored_int, wide_postgres, wide_sqlite
from collector.ledger.schema import machines, series
from collector.ledger.sqlite_batch import SqliteBatchWriter
from collector.model import Reading

ROWS_PER_TURN = 8192  # readings made into rows between turns of the event loop (~4 ms)
# rows go in (series_id, ts) order, duplicates in the order they came: a stable sort by ts, then
# one by series_id. Sorting by the pair instead built a key tuple per row and took 13-23 ms
# for a batch of 50,000 in the running collector (its 50,000 tuples also set off the garbage
# collector's count), where the two sorts take 1.5 ms.
_TS, _SID = itemgetter(1), itemgetter(0)
_COLUMNS = rollup.READING_COLUMNS
_PG_STAGE = "_collector_readings"
_PG_CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PG_STAGE} (series_id integer, ts bigint, "
    "value double precision, text text, quality smallint, value_int bigint, status bigint) "
    "ON COMMIT DELETE ROWS"
)
_PG_INSERT = (
    "INSERT INTO readings (series_id, ts, value, text, quality, value_int, status) "
    f"SELECT series_id, ts, value, text, quality, value_int, status FROM {_PG_STAGE} "
    "ORDER BY series_id, ts ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class SeriesInfo:
    """What the ledger records about a series when it is first seen."""

    machine: str
    tag: str
    unit: str | None = None
    source: str | None = None
    protocol: str | None = None


@dataclass(frozen=True)
class MachineInfo:
    id: str
    name: str | None = None
    area: str | None = None
    line: str | None = None


class MachineClaimedError(ValueError):
    """Two collector boxes configured the same machine id on one shared ledger."""


def kind_of(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text"


class LedgerWriter:
    """Writes batches of readings; creates unknown machines and series on the way."""

    def __init__(self, engine: AsyncEngine, box: str | None = None,
                 future_margin_us: int = rollup.FUTURE_MARGIN_US):
        self.engine = engine
        self.box = box
        self.dialect = engine.dialect.name
        self._ids: dict[str, dict[str, int]] = {}  # machine -> tag -> series id
        self._kindless: set[int] = set()  # series whose kind is not known yet
        self._known_machines: set[str] = set()
        self._info: dict[tuple[str, str], SeriesInfo] = {}
        self.rows_written = 0
        self.commits = 0  # committed batches: read-side caches compare it to know they are fresh
        self._sqlite = (SqliteBatchWriter(engine.url.database or "", moves=True,
                                          future_margin_us=future_margin_us)
                        if self.dialect == "sqlite" else None)
        self._latest_pg = rollup.latest_sql("postgresql", future_margin_us)
        self._wide = wide_sqlite if self._sqlite is not None else wide_postgres

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()

    async def settle(self) -> int:
        """SQLite: move the readings committed into `readings_recent` into `readings` and
        their minutes into `readings_1m` now, instead of at the next due move; returns how
        many moved. PostgreSQL commits into `readings` directly: 0."""
        return await self._sqlite.move() if self._sqlite is not None else 0

    def describe(self, infos: Iterable[SeriesInfo]) -> None:
        """Remember unit/source/protocol for series created later from readings."""
        for info in infos:
            self._info[(info.machine, info.tag)] = info

    async def sync_machines(self, items: Sequence[MachineInfo]) -> None:
        """Insert or update the configured machines (names change, ids do not), claiming
        them for this box; a machine another box owns is an error, not a silent merge."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        async with self.engine.begin() as conn:
            for m in items:
                row = {"id": m.id, "name": m.name, "area": m.area, "line": m.line, "box": self.box}
                await conn.execute(insert(machines).values(**row).on_conflict_do_nothing())
                owner = (await conn.execute(
                    select(machines.c.box).where(machines.c.id == m.id))).scalar_one()
                if owner is not None and self.box is not None and owner != self.box:
                    raise MachineClaimedError(
                        f"machine {m.id!r} belongs to collector box {owner!r} in this ledger, and "
                        f"this box is {self.box!r}: give the machine another id, or, if this box "
                        f"replaces {owner!r}, set `box: {owner}` in the config")
                await conn.execute(update(machines).where(machines.c.id == m.id).values(**row))
                self._known_machines.add(m.id)

    async def sync_series(self, infos: Sequence[SeriesInfo]) -> None:
        """Create configured series up front (with unit and source) and load every id."""
        self.describe(infos)
        async with self.engine.begin() as conn:
            if self._sqlite is None:  # rows a copy from a SQLite ledger left there (`schema`)
                await conn.run_sync(rollup.fold_recent)
            await self._load_ids(conn)
            missing = [i for i in infos if self._id(i.machine, i.tag) is None]
            if missing:
                await self._create(conn, missing)
            for info in infos:  # a unit or source edited in the config follows into the ledger
                sid = self._ids[info.machine][info.tag]
                await conn.execute(
                    update(series).where(series.c.id == sid)
                    .values(unit=info.unit, source=info.source, protocol=info.protocol)
                )

    async def write(self, batch: Sequence[Reading]) -> int:
        """Insert a batch in one transaction; returns the number of readings handed over."""
        if not batch:
            return 0
        try:
            rows = await self._rows_yielding(batch)
        except KeyError:  # a series not seen before: create it (committed), then build again
            await self._ensure_series({(r.machine, r.tag) for r in batch
                                       if self._id(r.machine, r.tag) is None})
            rows = await self._rows_yielding(batch)
        kinds = self._new_kinds(batch) if self._kindless else {}
        rows.sort(key=_TS)
        rows.sort(key=_SID)
        if self._sqlite is not None:
            await self._sqlite.write(rows, kinds)
        else:
            async with self.engine.begin() as conn:
                if kinds:  # one statement for all: a first scan brings thousands at once
                    await conn.execute(
                        update(series).where(series.c.id == bindparam("sid"))
                        .values(kind=bindparam("k")),
                        [{"sid": sid, "k": kind} for sid, kind in kinds.items()])
                inserted = await self._copy(conn, rows)
                await self._rollup(conn, rows, complete=inserted == len(rows))
        self._kindless.difference_update(kinds)  # only once committed
        self.rows_written += len(batch)
        self.commits += 1
        return len(batch)

    async def _copy(self, conn: AsyncConnection, rows: list[tuple[object, ...]]) -> int:
        """COPY straight into readings (asyncpg's binary COPY, several times faster than an
        INSERT); if some rows are already there (a replay, a redelivered message), that COPY
        rolls back to its savepoint and the batch goes through a staging table with
        ON CONFLICT DO NOTHING instead. Runs on the driver inside SQLAlchemy's transaction
        when one is open (a savepoint), else as its own transaction. Returns the number of
        rows inserted."""
        from asyncpg.exceptions import UniqueViolationError  # not loaded on SQLite

        raw = (await conn.get_raw_connection()).driver_connection
        # through SQLAlchemy first, which opens its transaction if none is open yet: COPY then
        # runs in a savepoint, and the stage (emptied at commit) never runs in autocommit
        await conn.exec_driver_sql(_PG_CREATE_STAGE)
        try:
            async with raw.transaction():  # type: ignore[union-attr]
                await raw.copy_records_to_table("readings", records=rows, columns=_COLUMNS)  # type: ignore[union-attr]
            return len(rows)
        except UniqueViolationError:
            pass
        await raw.copy_records_to_table(_PG_STAGE, records=rows)  # type: ignore[union-attr]
        status = await raw.execute(_PG_INSERT)  # type: ignore[union-attr]
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows>"

    async def _rollup(self, conn: AsyncConnection, rows: list[tuple[object, ...]],
                      complete: bool) -> None:
        """PostgreSQL: keep `latest_readings` and `readings_1m` in step, COPYing the newest rows
        and the batch's per-minute deltas into staging tables, then one upsert each (when
        every row went in; else the minutes it touched are rebuilt from the readings)."""
        if not rows:
            return
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute(rollup.CREATE_STAGES)  # type: ignore[union-attr]
        await raw.copy_records_to_table(rollup.STAGE_LATEST,  # type: ignore[union-attr]
                                        records=rollup.newest(rows))
        await raw.execute(self._latest_pg)  # type: ignore[union-attr]
        if complete:
            await raw.copy_records_to_table(rollup.STAGE_MINUTES,  # type: ignore[union-attr]
                                            records=rollup.deltas(rows))
            await raw.execute(rollup.ADD_PG)  # type: ignore[union-attr]
        else:
            await raw.executemany(rollup.for_asyncpg(rollup.RECOMPUTE),  # type: ignore[union-attr]
                                  rollup.touched(rows))

    async def _rows_yielding(self, batch: Sequence[Reading]) -> list[tuple[object, ...]]:
        """`_rows`, a slice of `ROWS_PER_TURN` readings at a time, giving the event loop a turn
        between slices: 40,000 readings took 19 ms in one piece, scans waited for it."""
        if len(batch) <= ROWS_PER_TURN:
            return self._rows(batch)
        rows: list[tuple[object, ...]] = []
        for start in range(0, len(batch), ROWS_PER_TURN):
            rows += self._rows(batch[start:start + ROWS_PER_TURN])
            await asyncio.sleep(0)  # after the last slice too: sorting them is a step of its own
        return rows

    def _rows(self, batch: Sequence[Reading]) -> list[tuple[object, ...]]:
        """(series_id, ts, value, text, quality, value_int, status) rows; raises KeyError for
        an unknown series. An integer keeps its exact value in value_int (`exact`)."""
        by_machine = self._ids
        last: str | None = None
        tag_ids: dict[str, int] = {}
        rows: list[tuple[object, ...]] = []
        append = rows.append
        # unpacked, not `r.value` and so on: six attribute lookups cost more than the rest;
        # readings come a machine at a time, so the machine's ids are looked up once a run
        # (0.33 -> 0.28 µs a reading, against a (machine, tag) key made for each)
        for r in batch:
            machine, tag, ts, v, quality, status = r
            if machine is not last:
                tag_ids = by_machine[machine]
                last = machine
            sid = tag_ids[tag]
            q = int(quality)
            cls = v.__class__
            if cls is float or v is None:
                if v != v:  # NaN is no value: SQLite would store it as NULL anyway
                    v = None
                append((sid, ts, v, None, q, None, status))
            elif cls is int:
                if INT64_MIN <= v < INT64_END:  # type: ignore[operator]
                    append((sid, ts, float(v), None, q, v, status))
                else:
                    append(self._wide_row(sid, r))
            elif isinstance(v, str):
                append((sid, ts, None, v, q, None, status))
            elif isinstance(v, bool) or not isinstance(v, int):
                append((sid, ts, float(v), None, q, None, status))
            else:  # an int subclass (IntEnum): its plain int
                append(self._wide_row(sid, r._replace(value=int(v))))
        return rows

    def _wide_row(self, sid: int, r: Reading) -> tuple[object, ...]:
        """The row of an integer reading that may not fit int64 (`exact`)."""
        v: int = r.value  # type: ignore[assignment]
        try:
            number: float | None = float(v)
        except OverflowError:  # beyond what a double holds: no number to store
            number = None
        return (sid, r.ts, number, None, int(r.quality), stored_int(v, self._wide), r.status)

    def _new_kinds(self, batch: Sequence[Reading]) -> dict[int, str]:
        """The kind (number, bool, text) of each series still without one that has its first
        real value in this batch."""
        kindless = self._kindless
        pending: dict[int, str] = {}
        for r in batch:
            if r.value is None:
                continue
            sid = self._ids[r.machine][r.tag]
            if sid in kindless and sid not in pending:
                pending[sid] = kind_of(r.value)  # type: ignore[assignment]
        return pending

    async def _ensure_series(self, unknown: set[tuple[str, str]]) -> None:
        """Create the series (and machines) not in the ledger yet, in a transaction of its own."""
        def missing() -> list[SeriesInfo]:
            return [self._info.get(k) or SeriesInfo(*k) for k in sorted(unknown)
                    if self._id(*k) is None]

        if self._sqlite is None:
            async with self.engine.begin() as conn:
                await self._load_ids(conn)
                if still := missing():
                    await self._create(conn, still)
            return
        self._absorb(*self._sqlite.ids())  # on SQLite through the writer's own connection
        if still := missing():
            new_machines = sorted({i.machine for i in still} - self._known_machines)
            await self._sqlite.create(
                [(m, self.box) for m in new_machines],
                [(i.machine, i.tag, i.unit, i.source, i.protocol) for i in still])
            self._absorb(*self._sqlite.ids())

    def _id(self, machine: str, tag: str) -> int | None:
        return self._ids.get(machine, {}).get(tag)

    def _absorb(self, rows: Iterable[Sequence[Any]], machine_ids: Iterable[str]) -> None:
        """Take in (id, machine, tag, kind) of every series and the machine ids."""
        for sid, machine, tag, kind in rows:
            self._ids.setdefault(machine, {})[tag] = sid
            if kind is None:
                self._kindless.add(sid)
            else:
                self._kindless.discard(sid)
        self._known_machines.update(machine_ids)

    async def _load_ids(self, conn: AsyncConnection) -> None:
        result = await conn.execute(select(series.c.id, series.c.machine_id, series.c.tag, series.c.kind))
        self._absorb(result.all(), [row[0] for row in await conn.execute(select(machines.c.id))])

    async def _create(self, conn: AsyncConnection, infos: Sequence[SeriesInfo]) -> None:
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        new_machines = sorted({i.machine for i in infos} - self._known_machines)
        if new_machines:
            await conn.execute(
                insert(machines).on_conflict_do_nothing(),
                [{"id": m, "box": self.box} for m in new_machines],
            )
            self._known_machines.update(new_machines)
        await conn.execute(
            insert(series).on_conflict_do_nothing(),
            [{"machine_id": i.machine, "tag": i.tag, "unit": i.unit, "source": i.source,
              "protocol": i.protocol} for i in infos],
        )
        await self._load_ids(conn)
