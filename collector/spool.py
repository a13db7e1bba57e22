"""The durable local buffer between the pipeline and an unreachable ledger.

A SQLite file of batches, oldest first. When the ledger cannot be written, or the in-memory
queue is full, whole batches are appended here (committed with synchronous=FULL, so a power cut
does not lose them) and replayed in order once the ledger takes writes again. The file is
capped: past `max_size` the oldest batches are dropped (or, with `drop="newest"`, the batches
that no longer fit), and the count of dropped readings is kept in the file so health can show
it even after a restart; the log says so at most once a minute, with the count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from collector.model import Quality, Reading

log = logging.getLogger("collector.spool")

DROP_LOG_EVERY = 60.0  # seconds between log lines about dropped readings

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " count INTEGER NOT NULL, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


def encode(batch: Sequence[Reading]) -> bytes:
    """JSON rows [machine, tag, ts, value, quality(, status)]: integers stay exact."""
    return json.dumps([[r.machine, r.tag, r.ts, r.value, int(r.quality)] if r.status is None
                       else [r.machine, r.tag, r.ts, r.value, int(r.quality), r.status]
                       for r in batch], separators=(",", ":")).encode()


def decode(body: bytes) -> list[Reading]:
    return [Reading(row[0], row[1], row[2], row[3], Quality(row[4]),
                    row[5] if len(row) > 5 else None) for row in json.loads(body)]


class SpoolError(RuntimeError):
    pass


class Spool:
    """Append-only batches with a size cap; every call runs on one private thread."""

    def __init__(self, path: str | Path, max_size: int, drop: str = "oldest"):
        self.path = Path(path)
        self.max_size = max_size
        self.drop_newest = drop == "newest"
        self._unlogged = 0  # dropped since the last log line
        self._logged_at: float | None = None
        self.backlog = 0  # readings waiting to be replayed
        self.batches = 0
        self.dropped = 0  # readings dropped because the cap was reached (ever)
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                conn.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open the spool file {str(self.path)!r}: {exc} "
                             "(set spool.path to a writable location)") from None
        self._conn = conn
        row = conn.execute("SELECT count(*), coalesce(sum(count), 0) FROM batches").fetchone()
        self.batches, self.backlog = row[0], row[1]
        dropped = conn.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        self.dropped = dropped[0] if dropped else 0

    async def close(self) -> None:
        if self._conn is not None:
            await self._call(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    async def append(self, batch: Sequence[Reading]) -> None:
        """Store a batch durably; may drop the oldest batches to stay under the cap."""
        if batch:
            await self._call(self._append, encode(batch), len(batch))

    def _append(self, body: bytes, count: int) -> None:
        conn = self._require()
        if self.drop_newest and self.batches and \
                self._used_bytes(conn) + len(body) > self.max_size:
            self._count_dropped(conn, count)  # what is spooled already stays
            return
        conn.execute("INSERT INTO batches (count, body) VALUES (?, ?)", (count, body))
        self.backlog += count
        self.batches += 1
        if self._used_bytes(conn) > self.max_size:
            self._enforce_cap(conn)

    def _used_bytes(self, conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _enforce_cap(self, conn: sqlite3.Connection) -> None:
        while self.batches > 1 and self._used_bytes(conn) > self.max_size:
            rows = conn.execute("SELECT id, count FROM batches ORDER BY id LIMIT 16").fetchall()
            if len(rows) >= self.batches:
                rows = rows[:-1]  # never drop the batch just written
            if not rows:
                break
            conn.execute("BEGIN")
            conn.execute(f"DELETE FROM batches WHERE id <= {int(rows[-1][0])}")
            n = sum(count for _, count in rows)
            self._count_dropped(conn, n)
            conn.execute("COMMIT")
            self.batches -= len(rows)
            self.backlog -= n

    def _count_dropped(self, conn: sqlite3.Connection, n: int) -> None:
        """Count `n` dropped readings in the file and here; log at most once a minute."""
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (n,))
        self.dropped += n
        self._unlogged += n
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= DROP_LOG_EVERY:
            since = "" if self._logged_at is None else f" in the last {now - self._logged_at:.0f} s"
            log.warning("spool %s is full (cap %d bytes): dropped the %s %d readings%s "
                        "(%d dropped in total)", self.path, self.max_size,
                        "newest" if self.drop_newest else "oldest", self._unlogged, since,
                        self.dropped)
            self._logged_at, self._unlogged = now, 0

    async def peek(self, max_readings: int) -> list[tuple[int, list[Reading]]]:
        """The oldest batches, at least one, up to about `max_readings` readings."""
        return await self._call(self._peek, max_readings)

    def _peek(self, max_readings: int) -> list[tuple[int, list[Reading]]]:
        conn = self._require()
        out: list[tuple[int, list[Reading]]] = []
        total = 0
        for batch_id, count, body in conn.execute("SELECT id, count, body FROM batches ORDER BY id"):
            if out and total + count > max_readings:
                break
            out.append((batch_id, decode(body)))
            total += count
        return out

    async def remove(self, ids: Sequence[int]) -> None:
        """Forget batches that are now in the ledger."""
        if ids:
            await self._call(self._remove, list(ids))

    def _remove(self, ids: list[int]) -> None:
        conn = self._require()
        marks = ",".join("?" * len(ids))
        conn.execute("BEGIN")
        # some may already be gone (dropped by the cap while they were being replayed)
        removed, readings = conn.execute(
            f"SELECT count(*), coalesce(sum(count), 0) FROM batches WHERE id IN ({marks})", ids
        ).fetchone()
        conn.execute(f"DELETE FROM batches WHERE id IN ({marks})", ids)
        conn.execute("COMMIT")
        self.batches -= removed
        self.backlog -= readings

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolError("the spool is not open")
        return self._conn
