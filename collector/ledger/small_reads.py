"""Small SQLite reads on the event loop's own thread.

A thread fetching N rows (aiosqlite's) takes the GIL back N times and, beside a busy event
loop, waits long for each (see `sqlite_batch`). A read with a bounded result (at most
`MAX_ROWS` rows: latest values, a page, minute rollups, the series list) therefore runs here,
synchronously, on a read-only connection of its own; anything larger, or a read that finds
the file locked, goes through aiosqlite. In WAL mode this connection sees every committed
batch and never blocks the writer.
"""

from __future__ import annotations

import gc
import sqlite3
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from collector.ledger.engine import SQLITE_PRAGMAS

MAX_ROWS = 20_000  # ~15 ms of the loop at most
CACHE_KIB = 16_384  # SQLite's page cache per reader; the OS caches the file as well
_BUSY_MS = 50  # a reader waits for a lock only while WAL files are set up or reset

_PRAGMAS = [p for p in SQLITE_PRAGMAS
            if p.split("=")[0] not in ("PRAGMA busy_timeout", "PRAGMA cache_size",
                                       "PRAGMA page_size", "PRAGMA journal_mode")]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a synchronous stretch that makes many
    objects which cannot form cycles (the row tuples of a result), whose collections would
    slow a large fetch down markedly (BENCHMARKS.md). Reference counting still frees
    everything; the collector runs again at its next turn."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class SmallReader:
    """A read-only connection to the ledger's SQLite file, used from one thread only."""

    def __init__(self, path: str, cache_kib: int = CACHE_KIB):
        self.path = path
        self.cache_kib = cache_kib
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)  # autocommit: no open snapshot
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        conn.execute(f"PRAGMA cache_size=-{self.cache_kib}")
        conn.execute("PRAGMA query_only=ON")
        self._conn = conn
        return conn

    def fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]] | None:
        """The rows, or None when the database is busy (the caller reads it the usual way)."""
        conn = self._conn or self._open()
        try:
            with gc_paused():
                return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_readers: weakref.WeakKeyDictionary[Any, SmallReader] = weakref.WeakKeyDictionary()


def attach(engine: Any, path: str, cache_kib: int = CACHE_KIB) -> None:
    """Read `engine`'s small results directly from the SQLite file at `path`, with a page
    cache of `cache_kib` KiB."""
    _readers[engine] = SmallReader(path, cache_kib)


def detach(engine: Any) -> None:
    reader = _readers.pop(engine, None)
    if reader is not None:
        reader.close()


def fetch(engine: Any, sql: str, params: Sequence[Any] | Mapping[str, Any],
          rows: int) -> list[tuple[Any, ...]] | None:
    """The rows read directly when `engine` has a reader and at most `rows` can come back;
    otherwise None."""
    reader = _readers.get(engine)
    if reader is None or rows > MAX_ROWS:
        return None
    return reader.fetch(sql, params)
