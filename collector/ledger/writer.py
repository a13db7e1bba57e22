"""The hot path into the ledger: readings → rows, inserted idempotently in one statement.

Series ids are cached in memory, so a batch costs one statement: an `executemany` of
`INSERT ... ON CONFLICT DO NOTHING` on SQLite and one `INSERT ... SELECT FROM unnest(arrays)`
on PostgreSQL. The (series_id, ts) key makes a replayed batch insert nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.ledger.schema import machines, series
from collector.model import Reading

_SQLITE_INSERT = (
    "INSERT INTO readings (series_id, ts, value, text, quality) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
_PG_INSERT = text(
    "INSERT INTO readings (series_id, ts, value, text, quality) "
    "SELECT * FROM unnest(CAST(:sid AS INTEGER[]), CAST(:ts AS BIGINT[]), "
    "CAST(:value AS DOUBLE PRECISION[]), CAST(:text AS TEXT[]), CAST(:quality AS SMALLINT[])) "
    "ON CONFLICT DO NOTHING"
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
        self._kinds: dict[int, str | None] = {}
        self._known_machines: set[str] = set()
        self._info: dict[tuple[str, str], SeriesInfo] = {}
        self.rows_written = 0

    def describe(self, infos: Iterable[SeriesInfo]) -> None:
        """Remember unit/source/protocol for series created later from readings."""
        for info in infos:
            self._info[(info.machine, info.tag)] = info

    async def sync_machines(self, items: Sequence[MachineInfo]) -> None:
        """Insert or update the configured machines (names change, ids do not)."""
        async with self.engine.begin() as conn:
            for m in items:
                row = {"id": m.id, "name": m.name, "area": m.area, "line": m.line, "box": self.box}
                existing = (await conn.execute(select(machines.c.id).where(machines.c.id == m.id))).first()
                if existing:
                    await conn.execute(update(machines).where(machines.c.id == m.id).values(**row))
                else:
                    await conn.execute(machines.insert().values(**row))
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
        unknown = {(r.machine, r.tag) for r in batch if (r.machine, r.tag) not in ids}
        async with self.engine.begin() as conn:
            if unknown:
                await self._load_ids(conn)
                still = [self._info.get(k) or SeriesInfo(*k) for k in sorted(unknown) if k not in ids]
                if still:
                    await self._create(conn, still)
            await self._set_kinds(conn, batch)
            if self.dialect == "sqlite":
                rows = [_row(ids[(r.machine, r.tag)], r) for r in batch]
                await conn.exec_driver_sql(_SQLITE_INSERT, rows)  # type: ignore[arg-type]
            else:
                await conn.execute(_PG_INSERT, _columns(ids, batch))
        self.rows_written += len(batch)
        return len(batch)

    async def _set_kinds(self, conn: AsyncConnection, batch: Sequence[Reading]) -> None:
        kinds = self._kinds
        pending: dict[int, str] = {}
        for r in batch:
            sid = self._ids[(r.machine, r.tag)]
            if kinds.get(sid) is None and r.value is not None and sid not in pending:
                pending[sid] = kind_of(r.value)  # type: ignore[assignment]
        for sid, kind in pending.items():
            await conn.execute(update(series).where(series.c.id == sid).values(kind=kind))
            kinds[sid] = kind

    async def _load_ids(self, conn: AsyncConnection) -> None:
        result = await conn.execute(select(series.c.id, series.c.machine_id, series.c.tag, series.c.kind))
        for sid, machine, tag, kind in result:
            self._ids[(machine, tag)] = sid
            self._kinds[sid] = kind
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


def _row(sid: int, r: Reading) -> tuple[object, ...]:
    value = r.value
    if value is None or value.__class__ is float:
        return (sid, r.ts, value, None, int(r.quality))
    if isinstance(value, str):
        return (sid, r.ts, None, value, int(r.quality))
    return (sid, r.ts, float(value), None, int(r.quality))


def _columns(ids: dict[tuple[str, str], int], batch: Sequence[Reading]) -> dict[str, list[object]]:
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
    return {"sid": sid, "ts": ts, "value": values, "text": texts, "quality": quality}
