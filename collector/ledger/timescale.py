"""TimescaleDB, used when a central PostgreSQL has it: detected, never required.

When the extension is installed in the ledger's database, `readings` becomes a hypertable
chunked by day of `ts` (integer microseconds), compressed per series after a week. Nothing
else changes: the same queries and the same idempotent inserts work on a hypertable.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("collector.ledger")

DAY_US = 86_400_000_000
COMPRESS_AFTER_US = 7 * DAY_US

_SETUP = (
    "SELECT create_hypertable('readings', 'ts', chunk_time_interval => CAST(:chunk AS BIGINT), "
    "migrate_data => true, if_not_exists => true)",
    "CREATE OR REPLACE FUNCTION collector_now_us() RETURNS BIGINT LANGUAGE SQL STABLE AS "
    "'SELECT CAST(extract(epoch FROM now()) * 1000000 AS BIGINT)'",
    "SELECT set_integer_now_func('readings', 'collector_now_us', replace_if_exists => true)",
    "ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'series_id', "
    "timescaledb.compress_orderby = 'ts')",
    "SELECT add_compression_policy('readings', compress_after => CAST(:after AS BIGINT), "
    "if_not_exists => true)",
)


async def timescale_version(engine: AsyncEngine) -> str | None:
    """The installed TimescaleDB version in the ledger's database, or None."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as conn:
        return (await conn.execute(
            text("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"))).scalar()


async def use_timescale(engine: AsyncEngine) -> bool:
    """Make `readings` a compressed hypertable if TimescaleDB is installed; True if it is one."""
    version = await timescale_version(engine)
    if version is None:
        return False
    try:
        async with engine.begin() as conn:
            for statement in _SETUP:
                await conn.execute(text(statement), {"chunk": DAY_US, "after": COMPRESS_AFTER_US})
    except Exception as exc:  # an older TimescaleDB or missing rights: plain tables still work
        log.warning("TimescaleDB %s found but not used for readings: %s", version, exc)
        return False
    log.info("TimescaleDB %s: readings is a hypertable (daily chunks, compressed after 7 days)", version)
    return True
