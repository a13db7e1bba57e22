"""Retention: readings older than a cutoff deleted, with their latest values and one-minute
rollups, in short transactions so that the writer is never locked out for long."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.ledger.rollup import MINUTE, RECOMPUTE, for_asyncpg
from collector.ledger.schema import series

_DELETE_BATCH = text(
    "DELETE FROM readings WHERE series_id = :sid AND ts < :cutoff AND ts <= COALESCE("
    "(SELECT ts FROM readings WHERE series_id = :sid AND ts < :cutoff ORDER BY ts "
    "LIMIT 1 OFFSET :skip), :cutoff)"
)


async def delete_older_than(engine: AsyncEngine, cutoff: int, batch: int = 5000) -> int:
    """Delete readings older than `cutoff` in transactions of at most `batch` rows per series,
    so the writer is never locked out for long, and their one-minute rollups (the minute the
    cutoff falls in is rebuilt from what is left of it). Returns the number of readings
    deleted."""
    minute = cutoff - cutoff % MINUTE
    async with engine.connect() as conn:
        ids = [row[0] for row in await conn.execute(select(series.c.id))]
    deleted = 0
    for sid in ids:
        while True:
            async with engine.begin() as conn:
                result = await conn.execute(
                    _DELETE_BATCH, {"sid": sid, "cutoff": cutoff, "skip": batch - 1}
                )
            deleted += result.rowcount or 0
            if (result.rowcount or 0) < batch:
                break
        async with engine.begin() as conn:
            result = await conn.execute(_DELETE_RECENT, {"sid": sid, "cutoff": cutoff})
            deleted += result.rowcount or 0
            await conn.execute(_DELETE_LATEST, {"sid": sid, "cutoff": cutoff})
            await conn.execute(_DELETE_ROLLUP, {"sid": sid, "upto": minute + MINUTE})
            if minute != cutoff:
                await conn.exec_driver_sql(
                    RECOMPUTE if engine.dialect.name == "sqlite" else for_asyncpg(RECOMPUTE),
                    (sid, minute, minute + MINUTE))
    return deleted


# readings not yet moved (`schema.readings_recent`) are seconds old, but a clock stepped back
# or a replay of old data may have left old ones there for a moment
_DELETE_RECENT = text("DELETE FROM readings_recent WHERE series_id = :sid AND ts < :cutoff")
_DELETE_LATEST = text("DELETE FROM latest_readings WHERE series_id = :sid AND ts < :cutoff")
_DELETE_ROLLUP = text("DELETE FROM readings_1m WHERE series_id = :sid AND minute < :upto")
