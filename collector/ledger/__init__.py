"""The production-data ledger: one SQL schema on SQLite or PostgreSQL.

`Ledger` opens the database, applies migrations, and offers the writer (hot path) and the
queries (read side) on one engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.ledger import queries, small_reads
from collector.ledger.engine import LedgerURLError, async_url, create_engine, upgrade
from collector.ledger.production import ProductionStore
from collector.ledger.queries import Bucket, BucketStats, Point, Series
from collector.ledger.timescale import use_timescale
from collector.ledger.writer import LedgerWriter, MachineClaimedError, MachineInfo, SeriesInfo
from collector.model import Reading

__all__ = [
    "Bucket", "BucketStats", "Ledger", "LedgerURLError", "MachineClaimedError", "MachineInfo", "Point", "Series", "SeriesInfo",
    "async_url",
]  # fmt: skip


class LedgerNotReady(RuntimeError):
    pass


class Ledger:
    """The ledger database: `await open()` connects and migrates; then write and query.
    `read_cache_kib`: the page cache of the direct reader of a SQLite ledger (`small_reads`)."""

    def __init__(self, url: str, *, schema: str | None = None, box: str | None = None,
                 read_cache_kib: int = small_reads.CACHE_KIB):
        self.url = url
        self.schema = schema
        self.read_cache_kib = read_cache_kib
        self.engine: AsyncEngine = create_engine(url, schema=schema)
        self.writer = LedgerWriter(self.engine, box=box)
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
            await upgrade(self.engine)
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
        try:
            return await queries.delete_older_than(self.engine, cutoff_us, batch)
        finally:
            self._deletions += 1

    # read side
    async def machines(self) -> list[dict[str, object]]:
        return await queries.list_machines(self.engine)

    async def series(self, machine: str | None = None) -> list[Series]:
        return await queries.list_series(self.engine, machine)

    async def latest(self, machine: str) -> list[tuple[Series, Point]]:
        return await queries.latest(self.engine, machine)

    async def readings(
        self, series: Sequence[Series], start: int, end: int, limit: int,
        after: tuple[int, int] | None = None,
    ) -> tuple[list[Point], tuple[int, int] | None]:
        return await queries.readings(self.engine, series, start, end, limit, after)

    def stream_readings(
        self, series: Sequence[Series], start: int, end: int, limit: int,
        after: tuple[int, int] | None = None,
    ) -> AsyncIterator[Point]:
        return queries.stream_readings(self.engine, series, start, end, limit, after)

    async def aggregate(
        self, series: Sequence[Series], start: int, end: int, bucket: int, offset: int = 0
    ) -> list[Bucket]:
        return await queries.aggregate(self.engine, series, start, end, bucket, offset)

    async def page_end(
        self, series: Sequence[Series], start: int, end: int, limit: int,
        after: tuple[int, int] | None = None,
    ) -> tuple[int, int] | None:
        return await queries.page_end(self.engine, series, start, end, limit, after)

    async def aggregate_stats(
        self, series: Sequence[Series], start: int, end: int, bucket: int, offset: int = 0
    ) -> list[BucketStats]:
        return await queries.aggregate_stats(self.engine, series, start, end, bucket, offset)

    async def reading_rows(
        self, ids: Sequence[int], start: int, end: int, limit: int,
        after: tuple[int, int] | None = None,
    ) -> list[tuple[int, int, float | None, str | None, int]]:
        return await queries.reading_rows(self.engine, ids, start, end, limit, after)

    async def reading_columns(
        self, ids: Sequence[int], start: int, end: int, limit: int,
        after: tuple[int, int] | None = None,
    ) -> queries.PageColumns:
        return await queries.reading_columns(self.engine, ids, start, end, limit, after)

    async def latest_rows(
        self, ids: Sequence[int]
    ) -> list[tuple[int, int, float | None, str | None, int]]:
        return await queries.latest_rows(self.engine, ids)

    async def find_series(self, machine: str, tags: Sequence[str] | None = None) -> list[Series]:
        found = await self.series(machine)
        if tags:
            wanted = set(tags)
            found = [s for s in found if s.tag in wanted]
        return found
