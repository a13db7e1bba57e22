"""The newest reading of each series, from the table the writer keeps (one row per series)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from collector.ledger.catalogue import Catalogue, Series
from collector.ledger.fetch import read_on_driver, read_small
from collector.ledger.pages import ROW_COLUMNS, Point, Row, present
from collector.model import Quality

_LATEST = f"SELECT {ROW_COLUMNS} FROM latest_readings WHERE {{ids}}"


class Latest:
    """The newest readings; series without readings are left out."""

    def __init__(self, engine: AsyncEngine, catalogue: Catalogue):
        self.engine = engine
        self.catalogue = catalogue

    async def of_machine(self, machine: str) -> list[tuple[Series, Point]]:
        """The newest reading of every series of a machine, by series id."""
        all_series = {s.id: s for s in await self.catalogue.series(machine)}
        rows = await self.rows(list(all_series))
        out = []
        for sid, ts, value, text_value, quality, value_int, status in rows:
            s = all_series[sid]
            out.append((s, Point(sid, ts, present(s.kind, value, text_value, value_int),
                                 Quality(quality), status)))
        out.sort(key=lambda item: item[0].id)
        return out

    async def rows(self, ids: Sequence[int]) -> list[Row]:
        """The newest reading of each given series as plain `Row` tuples, for callers that
        write them out themselves."""
        if not ids:
            return []
        ids = sorted(ids)
        rows = read_small(self.engine, _LATEST, ids, most=len(ids))
        if rows is not None:
            return rows
        async with self.engine.connect() as conn:
            return await read_on_driver(conn, _LATEST, ids)
