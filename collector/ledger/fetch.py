"""Rows of a statement over a set of series, as plain tuples: the `{ids}` (and `{start}`,
`{end}`) of the statement become each database's own placeholders, and the rows come from
SQLite's direct reader or the driver's connection, because SQLAlchemy's result rows cost more
than these queries take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.ledger import small_reads


def read_small(engine: AsyncEngine, sql: str, ids: Sequence[int], *bounds: int,
               most: int) -> list[tuple[Any, ...]] | None:
    """`read_on_driver` on SQLite's direct reader (see `small_reads`) when the result has at
    most `most` rows; None when it cannot be read that way."""
    if engine.dialect.name != "sqlite":
        return None
    query = sql.format(ids=f"series_id IN ({','.join('?' * len(ids))})", start="?", end="?")
    return small_reads.fetch(engine, query, [*ids, *bounds], most)


async def read_on_driver(conn: AsyncConnection, sql: str, ids: Sequence[int],
                         *bounds: int) -> list[tuple[Any, ...]]:
    """The statement run on the driver connection, as plain tuples (asyncpg's Records, which
    unpack, index and compare like tuples)."""
    driver = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "postgresql":
        if len(ids) == 1:  # `= $1` walks the index in order; `= ANY` would sort
            query = sql.format(ids="series_id = $1", start="$2", end="$3")
            return await driver.fetch(query, ids[0], *bounds)  # type: ignore[union-attr]
        query = sql.format(ids="series_id = ANY($1::integer[])", start="$2", end="$3")
        return await driver.fetch(query, list(ids), *bounds)  # type: ignore[union-attr]
    query = sql.format(ids=f"series_id IN ({','.join('?' * len(ids))})", start="?", end="?")
    return list(await driver.execute_fetchall(query, [*ids, *bounds]))  # type: ignore[union-attr]
