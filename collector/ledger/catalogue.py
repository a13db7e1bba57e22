"""The ledger's catalogue: its machines and their series (one per machine and tag), as the API
and the derivations look them up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.ledger import small_reads
from collector.ledger.schema import machines, series


@dataclass(frozen=True)
class Series:
    id: int
    machine: str
    tag: str
    unit: str | None
    source: str | None
    protocol: str | None
    kind: str | None


_SERIES = "SELECT id, machine_id, tag, unit, source, protocol, kind FROM series"


class Catalogue:
    """The machines and series stored in the ledger (those of every box sharing it)."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def machines(self) -> list[dict[str, object]]:
        """Every machine's row, with the names of its tags under "tags"."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(machines).order_by(machines.c.id))).mappings().all()
            tags = (await conn.execute(
                select(series.c.machine_id, series.c.tag).order_by(series.c.id))).all()
        by_machine: dict[str, list[str]] = {}
        for machine_id, tag in tags:
            by_machine.setdefault(machine_id, []).append(tag)
        return [{**dict(r), "tags": by_machine.get(r["id"], [])} for r in rows]

    async def series(self, machine: str | None = None) -> list[Series]:
        """A machine's series (every series for None), by machine, then id."""
        engine = self.engine
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
        return [Series(r.id, r.machine_id, r.tag, r.unit, r.source, r.protocol, r.kind)
                for r in rows]

    async def find(self, machine: str, tags: Sequence[str] | None = None) -> list[Series]:
        """A machine's series of the given tags (all of them when none are given)."""
        found = await self.series(machine)
        if tags:
            wanted = set(tags)
            found = [s for s in found if s.tag in wanted]
        return found
