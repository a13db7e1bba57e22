"""The hot path into the ledger: readings → rows, inserted idempotently in one statement.

Series ids are cached in memory, so a batch costs one statement: an `executemany` of
`INSERT ... ON CONFLICT DO NOTHING` on SQLite and one `INSERT ... SELECT FROM unnest(arrays)`
on PostgreSQL. The (series_id, ts) key makes a replayed batch insert nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.ledger.schema import machines, series
from collector.model import Reading

_SQLITE_INSERT = (
    "INSERT INTO readings (series_id, ts, value, text, quality) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
_PG_INSERT = (
    "INSERT INTO readings (series_id, ts, value, text, quality) "
    "SELECT * FROM unnest($1::integer[], $2::bigint[], $3::double precision[], $4::text[], "
    "$5::smallint[]) ON CONFLICT DO NOTHING"
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

    def __init__(self, engine: AsyncEngine, box: str | None = None):
        self.engine = engine
        self.box = box
        self.dialect = engine.dialect.name
        self._ids: dict[tuple[str, str], int] = {}
        self._kindless: set[int] = set()  # series whose kind is not known yet
        self._known_machines: set[str] = set()
        self._info: dict[tuple[str, str], SeriesInfo] = {}
        self.rows_written = 0

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
            await self._load_ids(conn)
            missing = [i for i in infos if (i.machine, i.tag) not in self._ids]
            if missing:
                await self._create(conn, missing)
            for info in infos:  # a unit or source edited in the config follows into the ledger
                sid = self._ids[(info.machine, info.tag)]
                await conn.execute(
                    update(series).where(series.c.id == sid)
                    .values(unit=info.unit, source=info.source, protocol=info.protocol)
                )

    async def write(self, batch: Sequence[Reading]) -> int:
        """Insert a batch in one transaction; returns the number of readings handed over."""
        if not batch:
            return 0
        ids = self._ids
        async with self.engine.begin() as conn:
            try:
                params = self._params(batch)
            except KeyError:  # a series not seen before: create it, then build again
                unknown = {(r.machine, r.tag) for r in batch} - ids.keys()
                await self._load_ids(conn)
                still = [self._info.get(k) or SeriesInfo(*k) for k in sorted(unknown) if k not in ids]
                if still:
                    await self._create(conn, still)
                params = self._params(batch)
            if self._kindless:
                await self._set_kinds(conn, batch)
            if self.dialect == "sqlite":
                await conn.exec_driver_sql(_SQLITE_INSERT, params)
            else:
                # five arrays in one statement; asyncpg binds them natively, so this goes to
                # the driver directly, inside the transaction SQLAlchemy holds
                raw = await conn.get_raw_connection()
                await raw.driver_connection.execute(_PG_INSERT, *params)  # type: ignore[union-attr]
        self.rows_written += len(batch)
        return len(batch)

    def _params(self, batch: Sequence[Reading]) -> Any:
        """Rows for SQLite's executemany, or column arrays for PostgreSQL's unnest."""
        ids = self._ids
        if self.dialect == "sqlite":
            rows: list[tuple[object, ...]] = []
            append = rows.append
            for r in batch:
                v = r.value
                sid = ids[(r.machine, r.tag)]
                if v.__class__ is float or v is None:
                    append((sid, r.ts, v, None, r.quality))
                elif isinstance(v, str):
                    append((sid, r.ts, None, v, r.quality))
                else:
                    append((sid, r.ts, float(v), None, r.quality))
            return rows
        return _columns(ids, batch)

    async def _set_kinds(self, conn: AsyncConnection, batch: Sequence[Reading]) -> None:
        """Record each new series' kind (number, bool, text) from its first real value."""
        kindless = self._kindless
        pending: dict[int, str] = {}
        for r in batch:
            if r.value is None:
                continue
            sid = self._ids[(r.machine, r.tag)]
            if sid in kindless and sid not in pending:
                pending[sid] = kind_of(r.value)  # type: ignore[assignment]
        for sid, kind in pending.items():
            await conn.execute(update(series).where(series.c.id == sid).values(kind=kind))
            kindless.discard(sid)

    async def _load_ids(self, conn: AsyncConnection) -> None:
        result = await conn.execute(select(series.c.id, series.c.machine_id, series.c.tag, series.c.kind))
        for sid, machine, tag, kind in result:
            self._ids[(machine, tag)] = sid
            if kind is None:
                self._kindless.add(sid)
            else:
                self._kindless.discard(sid)
        self._known_machines.update(
            row[0] for row in await conn.execute(select(machines.c.id))
        )

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


def _columns(ids: dict[tuple[str, str], int], batch: Sequence[Reading]) -> tuple[list[object], ...]:
    sid: list[object] = []
    ts: list[object] = []
    values: list[object] = []
    texts: list[object] = []
    quality: list[object] = []
    for r in batch:
        sid.append(ids[(r.machine, r.tag)])
        ts.append(r.ts)
        v = r.value
        if isinstance(v, str):
            values.append(None)
            texts.append(v)
        else:
            values.append(None if v is None else float(v))
            texts.append(None)
        quality.append(int(r.quality))
    return (sid, ts, values, texts, quality)
