"""The production-data ledger: one SQL schema on SQLite or PostgreSQL.

`Ledger` opens the database, applies migrations, and offers on one engine the write side
(`write`, `sync_config`, `delete_older_than`; `writer.py`, `retention.py`) and the read side
in rooms: `catalogue` (machines, series), `pages` (raw readings), `aggregates` (time buckets),
`latest` (the newest reading of each series) and `production` (the derived production ledger).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.ledger import small_reads
from collector.ledger.aggregates import Aggregates, BucketStats
from collector.ledger.catalogue import Catalogue, Series
from collector.ledger.engine import (
    LedgerSchemaMissing,
    LedgerURLError,
    async_url,
    create_engine,
    upgrade,
)
from collector.ledger.latest import Latest
from collector.ledger.pages import PageQuery, Pages, Point
from collector.ledger.production import ProductionStore
from collector.ledger.retention import delete_older_than
from collector.ledger.rollup import FUTURE_MARGIN_US
from collector.ledger.timescale import use_timescale
from collector.ledger.writer import LedgerWriter, MachineClaimedError, MachineInfo, SeriesInfo
from collector.model import Reading

__all__ = [
    "BucketStats", "Ledger", "LedgerSchemaMissing", "LedgerURLError", "MachineClaimedError",
    "MachineInfo", "PageQuery", "Point", "Series", "SeriesInfo", "async_url",
]  # fmt: skip


class LedgerNotReady(RuntimeError):
    pass


class Ledger:
    """The ledger database: `await open()` connects and migrates; then write and query.
    `read_cache_kib`: the page cache of the direct reader of a SQLite ledger (`small_reads`);
    `future_margin`: `pipeline.future_margin` (s), see `rollup.latest_sql`."""

    def __init__(self, url: str, *, schema: str | None = None, box: str | None = None,
                 read_cache_kib: int = small_reads.CACHE_KIB,
                 future_margin: float = FUTURE_MARGIN_US / 1_000_000):
        self.url = url
        self.schema = schema
        self.read_cache_kib = read_cache_kib
        self.engine: AsyncEngine = create_engine(url, schema=schema)
        # a latest value stamped further ahead than this gives way to the next reading
        self.writer = LedgerWriter(self.engine, box=box,
                                   future_margin_us=int(future_margin * 1_000_000))
        self.catalogue = Catalogue(self.engine)
        self.pages = Pages(self.engine)
        self.aggregates = Aggregates(self.engine)
        self.latest = Latest(self.engine, self.catalogue)
        self.production = ProductionStore(self.engine)
        self.timescale = False
        self.ready = False  # migrated and synced; writes before that fail (and are spooled)
        self._deletions = 0

    @property
    def changes(self) -> int:
        """Grows with every change this process commits to readings (batches written, old
        readings deleted): an answer built from the ledger stays right while it is unchanged,
        for the machines only this process writes (those in its config)."""
        return self.writer.commits + self._deletions

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def open(self, *, migrate: bool = True) -> None:
        if migrate:
            await upgrade(self.engine, self.schema)
            self.timescale = await use_timescale(self.engine)
        if self.dialect == "sqlite":
            small_reads.attach(self.engine, self.engine.url.database or "", self.read_cache_kib)
        self.ready = True

    async def close(self) -> None:
        small_reads.detach(self.engine)
        try:
            await self.production.close()
            await self.writer.close()
        finally:
            await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # write side
    async def sync_config(self, machines: Sequence[MachineInfo], series: Sequence[SeriesInfo]) -> None:
        await self.writer.sync_machines(machines)
        await self.writer.sync_series(series)

    async def write(self, batch: Sequence[Reading]) -> int:
        if not self.ready:
            raise LedgerNotReady("the ledger database has not been reached yet")
        return await self.writer.write(batch)

    async def delete_older_than(self, cutoff_us: int, batch: int = 5000) -> int:
        """Retention: readings older than `cutoff_us` deleted (see `retention`)."""
        try:
            return await delete_older_than(self.engine, cutoff_us, batch)
        finally:
            self._deletions += 1
