"""The SQLite hot path: a batch, its latest values and its minute rollups, committed on a
thread and connection of the writer's own, handed over once per batch.

Through SQLAlchemy and aiosqlite every statement is a round trip between the event loop and
aiosqlite's thread, and a batch is a dozen statements (BEGIN, the inserts, the upserts,
COMMIT). While the loop is busy (eight API clients asking for large answers at once) each
round trip waits for a turn of the loop: measured, a 1,000-reading batch then took up to
4.8 s and ingest fell from 2,000 to ~200 readings/s. Here the whole transaction is one
function on the writer's thread, so the loop only waits for its result.

Rows go in as multi-row `INSERT ... VALUES (...), (...)` statements, not `executemany`:
Python's sqlite3 module lets go of the GIL around each row's step and must take it back
before the next, and while another thread runs Python (the event loop) each take waits for
the interpreter's switch interval. Measured: 20,000 rows took 35 ms with the loop idle and
23 s with it busy; as statements of up to 4,096 rows, 27 ms and 67 ms. Chunk sizes are powers
of two, so a handful of statement texts repeat and stay prepared in the statement cache (each
prepared 4,096-row statement holds ~2 MB; arbitrary sizes would fill the cache with them).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from itertools import chain

from collector.ledger import rollup
from collector.ledger.engine import SQLITE_PRAGMAS

INSERT = ("INSERT INTO readings (series_id, ts, value, text, quality) VALUES (?, ?, ?, ?, ?) "
          "ON CONFLICT DO NOTHING")
SET_KIND = "UPDATE series SET kind = ? WHERE id = ?"
# host parameters one SQLite statement may hold (32,766 since SQLite 3.32, 999 before)
MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_VALUES = re.compile(r"VALUES (\(\?(?:, \?)*\))")


class SqliteBatchWriter:
    """Writes sorted reading rows to the SQLite file at `path`; one thread, one connection."""

    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")

    async def write(self, rows: Sequence[tuple[object, ...]], kinds: dict[int, str]) -> int:
        """Commit rows (sorted by series_id, ts) and the kinds of newly seen series; returns
        the number of rows inserted (fewer when some were stored already)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._write, rows, kinds)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._close)
        finally:
            self._thread.shutdown(wait=False)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        self._conn = conn
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(self, rows: Sequence[tuple[object, ...]], kinds: dict[int, str]) -> int:
        conn = self._conn or self._open()
        conn.execute("BEGIN IMMEDIATE")  # the write lock now, not halfway through
        try:
            if kinds:
                conn.executemany(SET_KIND, [(kind, sid) for sid, kind in kinds.items()])
            inserted = many(conn, INSERT, rows)
            many(conn, rollup.LATEST, rollup.newest(rows))
            if inserted == len(rows):
                many(conn, rollup.ADD, rollup.deltas(rows))
            else:  # some rows were there already: rebuild the minutes touched (replays)
                conn.executemany(rollup.RECOMPUTE, rollup.touched(rows))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:  # the connection is unusable: open a new one next time
                    self._close()
            raise
        return inserted


def many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]]) -> int:
    """`sql` (one `VALUES (?, ...)` group) for every row, as a few multi-row statements;
    returns the number of rows changed."""
    if not rows:
        return 0
    changed = 0
    i = 0
    for size in chunks(len(rows), MAX_PARAMS // len(rows[0])):
        cursor = conn.execute(values_sql(sql, size), tuple(chain.from_iterable(rows[i:i + size])))
        changed += max(cursor.rowcount, 0)
        i += size
    return changed


def chunks(n: int, most: int) -> list[int]:
    """n as a sum of powers of two, each at most `most`, the largest first."""
    top = 1 << (most.bit_length() - 1)
    sizes = [top] * (n // top)
    rest, bit = n % top, top >> 1
    while rest:
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


@lru_cache(maxsize=128)
def values_sql(sql: str, rows: int) -> str:
    """`sql` with its `VALUES (?, ...)` group repeated for `rows` rows."""
    match = _VALUES.search(sql)
    if match is None:
        raise ValueError(f"no VALUES (?, ...) group in {sql!r}")
    group = match.group(1)
    return f"{sql[:match.start(1)]}{', '.join([group] * rows)}{sql[match.end(1):]}"
