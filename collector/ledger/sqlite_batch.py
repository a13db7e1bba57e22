"""SQLite writes: a batch, its latest values and its minute rollups, committed by the event
loop's own thread on the writer's own connection, in multi-row statements, giving the loop a
turn every few milliseconds.

Not through a thread (aiosqlite's or ours): beside a busy event loop a thread hardly ever gets
the GIL back between SQLite calls (see "Notes behind design choices" in BENCHMARKS.md). What
would still block the loop stays off it: another connection's write lock (`BEGIN IMMEDIATE`
is retried after a sleep) and checkpoints, which run on a thread of their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any, TypeVar

from collector.ledger import rollup
from collector.ledger.engine import SQLITE_PRAGMAS

INSERT = ("INSERT INTO readings (series_id, ts, value, text, quality, value_int, status) "
          "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
SET_KIND = "UPDATE series SET kind = ? WHERE id = ?"
NEW_MACHINE = "INSERT INTO machines (id, box) VALUES (?, ?) ON CONFLICT DO NOTHING"
NEW_SERIES = ("INSERT INTO series (machine_id, tag, unit, source, protocol) VALUES (?, ?, ?, ?, ?) "
              "ON CONFLICT DO NOTHING")
# host parameters one SQLite statement may hold (32,766 since SQLite 3.32, 999 before)
MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_VALUES = re.compile(r"VALUES (\(\?(?:, \?)*\))")

log = logging.getLogger("collector.ledger")
T = TypeVar("T")
Row = tuple[Any, ...]
Pick = Callable[[Row], Row]


def narrowed(sql: str, columns: Sequence[str]) -> str:
    """An `INSERT INTO t (all columns) VALUES (?, ...) ...` statement naming only `columns`
    (the others are NULL, also as `excluded.` columns of an upsert)."""
    head, rest = sql.split(" (", 1)
    _, tail = rest.split(") VALUES (", 1)
    return f"{head} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}{tail[tail.index(')'):]}"


# Statements naming only the columns a row has a value for: in a multi-row statement each
# bound NULL costs about as much as a value (a float reading's row took 2.4 µs to insert with
# all seven columns, 1.2 µs with the four it fills), and nearly every row is a plain number
# or an integer without text or status. Rows (series_id, ts, value, text, quality,
# value_int, status) and minute deltas (series_id, minute, n, nv, lo, hi, total, last_ts,
# last_value, last_text, last_int) go by what they hold: (statement, columns picked).
_READING_COLUMNS = ("series_id", "ts", "value", "text", "quality", "value_int", "status")
_NUMBER, _INTEGER = (0, 1, 2, 4), (0, 1, 2, 4, 5)
_DELTA_COLUMNS = ("series_id", "minute", "n", "nv", "lo", "hi", "total", "last_ts",
                  "last_value", "last_text", "last_int")
_DELTA_NUMBER, _DELTA_INTEGER = tuple(range(9)), (*range(9), 10)


def _forms(sql: str, columns: Sequence[str],
           picks: tuple[tuple[int, ...], ...]) -> tuple[tuple[str, Pick | None], ...]:
    return (*((narrowed(sql, [columns[i] for i in pick]), itemgetter(*pick)) for pick in picks),
            (sql, None))


def shaped(rows: Sequence[Row], text: int, number_when: int, integer: int
           ) -> tuple[list[Row], list[Row], list[Row]]:
    """rows split, each part in the rows' order, into those without text or a status
    (`number_when` is the last column that must be NULL too) and no integer, those with an
    integer, and the rest."""
    numbers: list[Row] = []
    integers: list[Row] = []
    rest: list[Row] = []
    for row in rows:
        if row[text] is None and row[number_when] is None:
            (numbers if row[integer] is None else integers).append(row)
        else:
            rest.append(row)
    return numbers, integers, rest


CHECKPOINT_BYTES = 64 * 2**20  # ~ what wal_autocheckpoint=8192 does with 8 KiB pages
STATEMENT_ROWS = 1024  # rows per statement at most: ~3 ms of the loop each
TURN = 0.005  # seconds the writer holds the loop before it lets others have a turn
LOCK_WAIT = 30.0  # seconds to wait for another connection's write lock before failing
_RETRY = 0.02


class SqliteBatchWriter:
    """Writes sorted reading rows to the SQLite file at `path` from the event loop's thread."""

    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._checkpoint: asyncio.Task[None] | None = None

    async def write(self, rows: Sequence[tuple[object, ...]], kinds: dict[int, str]) -> int:
        """Commit rows (sorted by series_id, ts) and the kinds of newly seen series; returns
        the number of rows inserted (fewer when some were stored already)."""
        conn = self._conn or self._open()
        await self._begin(conn)
        try:
            if kinds:
                conn.executemany(SET_KIND, [(kind, sid) for sid, kind in kinds.items()])
            turns = Turns()
            inserted = 0
            for (sql, pick), part in zip(_INSERTS, shaped(rows, 3, 6, 5), strict=True):
                inserted += await many_yielding(conn, sql, part, turns, pick)
            await turns.maybe()
            for (sql, pick), part in zip(_LATEST, shaped(rollup.newest(rows), 3, 6, 5),
                                         strict=True):
                await many_yielding(conn, sql, part, turns, pick)
            if inserted == len(rows):
                await turns.maybe()  # the deltas take ~1 µs a reading to work out
                for (sql, pick), part in zip(_ADD, shaped(rollup.deltas(rows), 9, 9, 10),
                                             strict=True):
                    await many_yielding(conn, sql, part, turns, pick)
            else:  # some rows were there already: rebuild the minutes touched (replays)
                for touched in rollup.touched(rows):
                    await turns.maybe()
                    conn.execute(rollup.RECOMPUTE, touched)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        self._maybe_checkpoint()
        return inserted

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` (synchronous, short) in one write transaction of this connection."""
        conn = self._conn or self._open()
        await self._begin(conn)
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        self._maybe_checkpoint()
        return result

    def ids(self) -> tuple[list[tuple[int, str, str, str | None]], list[str]]:
        """(id, machine, tag, kind) of every series, and every machine id."""
        conn = self._conn or self._open()
        return (conn.execute("SELECT id, machine_id, tag, kind FROM series").fetchall(),
                [row[0] for row in conn.execute("SELECT id FROM machines")])

    async def create(self, machines: Sequence[tuple[str, str | None]],
                     series: Sequence[tuple[str, str, str | None, str | None, str | None]]) -> None:
        """Add machines (id, box) and series (machine, tag, unit, source, protocol) that are
        not there yet, in one transaction."""
        conn = self._conn or self._open()
        await self._begin(conn)
        try:
            if machines:
                conn.executemany(NEW_MACHINE, machines)
            conn.executemany(NEW_SERIES, series)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        conn.execute("PRAGMA busy_timeout=0")  # never wait on the loop's thread (see _begin)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on a thread instead
        self._conn = conn
        return conn

    async def _begin(self, conn: sqlite3.Connection) -> None:
        """Take the write lock now (not halfway through), sleeping while another connection
        holds it (retention, a config sync, an admin's shell)."""
        waited = 0.0
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if waited >= LOCK_WAIT:
                    raise sqlite3.OperationalError(
                        f"{exc} (the ledger file's write lock was held elsewhere for "
                        f"{LOCK_WAIT:.0f} s)") from None
            await asyncio.sleep(_RETRY)
            waited += _RETRY

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:  # the connection is unusable: open a new one next time
                conn.close()
                self._conn = None

    def _maybe_checkpoint(self) -> None:
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        try:
            size = os.path.getsize(f"{self.path}-wal")
        except OSError:
            return
        if size >= CHECKPOINT_BYTES:
            self._checkpoint = asyncio.create_task(asyncio.to_thread(_checkpoint, self.path),
                                                   name="ledger-checkpoint")


def _checkpoint(path: str) -> None:
    """Copy committed WAL frames into the database file (PASSIVE: never waits for readers
    or writers); the WAL then starts over from its beginning."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=1000")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as exc:  # retried after the next commit
        log.warning("ledger checkpoint failed: %s", exc)
    finally:
        conn.close()


_INSERTS = _forms(INSERT, _READING_COLUMNS, (_NUMBER, _INTEGER))
_LATEST = _forms(rollup.LATEST, _READING_COLUMNS, (_NUMBER, _INTEGER))
_ADD = _forms(rollup.ADD, _DELTA_COLUMNS, (_DELTA_NUMBER, _DELTA_INTEGER))


class Turns:
    """Gives the event loop a turn once the writer has held it for `TURN` seconds: not after
    every statement, as a busy loop's turn can be long and a batch has many statements."""

    def __init__(self) -> None:
        self.since = time.perf_counter()

    async def maybe(self) -> None:
        if time.perf_counter() - self.since >= TURN:
            await asyncio.sleep(0)
            self.since = time.perf_counter()


async def many_yielding(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]],
                        turns: Turns, pick: Pick | None = None) -> int:
    """`many`, giving the event loop its turns between statements; `pick` takes from each
    row the values `sql` names."""
    changed = 0
    for piece in pieces(rows):
        await turns.maybe()
        changed += _statement(conn, sql, piece, pick)
    return changed


def many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]]) -> int:
    """`sql` (one `VALUES (?, ...)` group) for every row, as a few multi-row statements;
    returns the number of rows changed."""
    return sum(_statement(conn, sql, piece) for piece in pieces(rows))


def pieces(rows: Sequence[Sequence[object]]) -> list[Sequence[Sequence[object]]]:
    """rows cut into the slices one statement each takes (see `chunks`)."""
    if not rows:
        return []
    out = []
    i = 0
    for size in chunks(len(rows), min(STATEMENT_ROWS, MAX_PARAMS // len(rows[0]))):
        out.append(rows[i:i + size])
        i += size
    return out


def _statement(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]],
               pick: Pick | None = None) -> int:
    values = chain.from_iterable(rows if pick is None else map(pick, rows))  # type: ignore[arg-type]
    cursor = conn.execute(values_sql(sql, len(rows)), tuple(values))
    return max(cursor.rowcount, 0)


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
