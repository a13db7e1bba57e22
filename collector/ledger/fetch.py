"""Rows of a statement over a set of series, as plain tuples: the `{ids}` (and `{start}`,
`{end}`, each as often as it likes) of the statement become each database's own placeholders, and the rows come from
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
    return small_reads.fetch(engine, _sqlite(sql, len(ids)), [*ids, *bounds], most)


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
    return list(await driver.execute_fetchall(_sqlite(sql, len(ids)),  # type: ignore[union-attr]
                                              [*ids, *bounds]))


def _sqlite(sql: str, ids: int) -> str:
    """The statement with SQLite's numbered placeholders (`?1`, ...), so that `{ids}`,
    `{start}` and `{end}` may each appear more than once."""
    return sql.format(ids=f"series_id IN ({','.join(f'?{i + 1}' for i in range(ids))})",
                      start=f"?{ids + 1}", end=f"?{ids + 2}")
