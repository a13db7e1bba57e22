"""SQLite writes: a batch, its latest values and its minute rollups, committed by the event
loop's own thread on the writer's own connection, in multi-row statements, giving the loop a
turn every few milliseconds.

Not through a thread (aiosqlite's or ours): beside a busy event loop a thread hardly ever gets
the GIL back between SQLite calls (see "Notes behind design choices" in BENCHMARKS.md). What
would still block the loop stays off it: another connection's write lock (`BEGIN IMMEDIATE`
is retried after a sleep) and checkpoints, which run on a thread of their own.

Readings are committed into `readings_recent`, not `readings`: `readings` is clustered by
(series, time), so a commit bringing one reading for each of 2,000 series would write 2,000
of its pages (and as many of `readings_1m`'s), each to the WAL and again at the checkpoint.
The small table takes them in a few pages, and every `MOVE_SECONDS` (or `MOVE_ROWS` rows) its
rows move into `readings` in one sorted pass, their minutes added to `readings_1m` on the
way: each series' newest page is then written once per move instead of once per commit. A
reading is in exactly one of the two tables: a row goes into the small table unchecked only
when it is newer than everything its series has in `readings` (`_moved`); an older one (a
replay, a clock stepped back) is first looked up there.
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

_COLUMNS, _MARKS = rollup.READING_LIST, rollup.READING_MARKS
INSERT = f"INSERT INTO readings_recent ({_COLUMNS}) VALUES ({_MARKS}) ON CONFLICT DO NOTHING"
# a row that may be in `readings` already (older than its series' newest moved row)
INSERT_CHECKED = (
    f"INSERT INTO readings_recent ({_COLUMNS}) SELECT {_MARKS} WHERE NOT EXISTS "
    "(SELECT 1 FROM readings WHERE series_id = ? AND ts = ?) ON CONFLICT DO NOTHING")
# two statements' worth: with min() and max() in one SELECT, SQLite scans the whole table
RECENT_SPAN = ("SELECT (SELECT min(series_id) FROM readings_recent), "
               "(SELECT max(series_id) FROM readings_recent)")
RECENT_SERIES = ("SELECT series_id, count(*), max(ts) FROM readings_recent "
                 "WHERE series_id >= ? AND series_id <= ? GROUP BY series_id ORDER BY series_id")
MOVE_SERIES = (f"INSERT INTO readings ({_COLUMNS}) SELECT {_COLUMNS} FROM readings_recent "
               "WHERE series_id >= ? AND series_id <= ? ORDER BY series_id, ts "
               "ON CONFLICT DO NOTHING")
TOUCHED = ("SELECT DISTINCT series_id, ts - ts % 60000000, ts - ts % 60000000 + 60000000 "
           "FROM readings_recent WHERE series_id >= ? AND series_id <= ?")
NEWEST_MOVED = ("SELECT s.id, (SELECT max(ts) FROM readings r WHERE r.series_id = s.id) "
                "FROM series s WHERE s.id IN ({})")
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
_SID, _TS = itemgetter(0), itemgetter(1)


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
# value_int, status) go by what they hold: (statement, columns picked).
_NUMBER, _INTEGER = (0, 1, 2, 4), (0, 1, 2, 4, 5)


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


MOVE_SECONDS = 60.0  # recent readings move into `readings` this often ...
MOVE_ROWS = 600_000  # ... or once this many wait (a backlog replayed; 20,000 tags at 1 Hz: 30 s)
# A minute: 2,000 tags at 1 Hz took 5.0 µs of the writer's CPU per reading against 5.6 µs with
# moves every 30 s (each series' newest pages written half as often) and 5.3 µs every 90 s (each
# commit rewrites more of the larger recent table); 5,000 tags 5.7 against 6.3 µs.
MOVE_CHUNK = 8192  # rows moved and summed per statement of a move (about)
# a move sums its rows' minutes one minute per statement (in key order, no sort) when its rows
# are known to fall in at most this many minutes; else in one statement that sorts them
MINUTE_STATEMENTS = 3
NOTHING = -(2**63) - 1  # older than any timestamp: a series with nothing in `readings`
# The writer's page cache: what a move touches (each series' newest page of `readings` and of
# `readings_1m`) is written and not read again for a minute, and the pages of the recent
# table that a commit rewrites come back from the OS's file cache cheaply, so a larger cache
# only keeps memory. 4 MiB against 16 MiB (interleaved runs of bench/modbus.py): 2,000 tags
# with history 99 against 110 MB RSS, 5,000 tags 112 against 126 MB, 20,000 tags 178 against
# 191 MB; CPU within the runs' noise (2,000 tags 1.70%, 1.62% against 1.60%, 1.65%).
WRITER_CACHE_KIB = 4096
CHECKPOINT_BYTES = 64 * 2**20  # ~ what wal_autocheckpoint=8192 does with 8 KiB pages
STATEMENT_ROWS = 1024  # rows per statement at most: ~3 ms of the loop each
TURN = 0.005  # seconds the writer holds the loop before it lets others have a turn
LOCK_WAIT = 30.0  # seconds to wait for another connection's write lock before failing
_RETRY = 0.02


class SqliteBatchWriter:
    """Writes sorted reading rows to the SQLite file at `path` from the event loop's thread."""

    def __init__(self, path: str, moves: bool = False,
                 future_margin_us: int = rollup.FUTURE_MARGIN_US):
        self.path = path
        self._latest = _forms(rollup.latest_sql("sqlite", future_margin_us),
                              rollup.READING_COLUMNS, (_NUMBER, _INTEGER))
        self.moves = moves  # this writer writes readings and moves them (`move`)
        self._conn: sqlite3.Connection | None = None
        self._checkpoint: asyncio.Task[None] | None = None
        self._moved: dict[int, int] = {}  # series -> its newest ts in `readings`
        self._moved_top = NOTHING  # the newest of them all
        self._waiting = 0  # rows committed into readings_recent since the last move
        # oldest and newest ts of what readings_recent may hold; None while not known (rows
        # left from before this writer started, by a process that did not stop cleanly)
        self._span: tuple[int, int] | None = None
        self._moved_at = time.monotonic()
        self._move_failed = False
        self.moves_done = 0

    async def write(self, rows: Sequence[tuple[object, ...]], kinds: dict[int, str]) -> int:
        """Commit rows (sorted by series_id, ts) and the kinds of newly seen series; returns
        the number of rows inserted (fewer when some were stored already). The rows go into
        `readings_recent`; a move follows when one is due."""
        if len(rows) > STATEMENT_ROWS:  # preparing a large batch held the loop: a turn first
            await asyncio.sleep(0)  # (5,000 tags, 2 s batches: scan jitter p99 26 -> 16 ms)
        conn = self._conn or self._open()
        turns = Turns()  # from here: splitting and shaping a large batch take milliseconds too
        oldest = min(map(_TS, rows), default=-NOTHING)
        fresh, known = self._split(conn, rows, oldest)
        if self._span is not None and rows:  # before the rows go in: a bound that may be wide
            self._span = (min(self._span[0], oldest), max(self._span[1], max(map(_TS, rows))))
        await self._begin(conn)
        try:
            if kinds:
                conn.executemany(SET_KIND, [(kind, sid) for sid, kind in kinds.items()])
            inserted = 0
            for (sql, pick), part in zip(_INSERTS, shaped(fresh, 3, 6, 5), strict=True):
                inserted += await many_yielding(conn, sql, part, turns, pick)
            if known:
                await turns.maybe()
                inserted += max(conn.executemany(
                    INSERT_CHECKED, [(*row, row[0], row[1]) for row in known]).rowcount, 0)
            await turns.maybe()
            for (sql, pick), part in zip(self._latest, shaped(rollup.newest(rows), 3, 6, 5),
                                         strict=True):
                await many_yielding(conn, sql, part, turns, pick)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        self._waiting += inserted
        self._maybe_checkpoint()
        if self.moves and (self._waiting >= MOVE_ROWS
                           or time.monotonic() - self._moved_at >= MOVE_SECONDS):
            await self.move_quietly()
        return inserted

    def _split(self, conn: sqlite3.Connection, rows: Sequence[Row], oldest: int
               ) -> tuple[Sequence[Row], list[Row]]:
        """rows (the oldest stamped `oldest`) newer than everything their series has in
        `readings` (inserted unchecked), and the others (looked up there first), both in the
        rows' order."""
        moved = self._moved
        unknown = set(map(_SID, rows)) - moved.keys()
        if unknown:
            ids = sorted(unknown)
            for i in range(0, len(ids), MAX_PARAMS):
                part = ids[i:i + MAX_PARAMS]
                for sid, newest in conn.execute(
                        NEWEST_MOVED.format(",".join("?" * len(part))), part):
                    moved[sid] = NOTHING if newest is None else newest
            for sid in unknown:  # not in `series` (yet): nothing of it in `readings` either
                moved.setdefault(sid, NOTHING)
            self._moved_top = max(moved.values(), default=NOTHING)
        if rows and oldest > self._moved_top:  # the usual batch: all newer
            return rows, []
        fresh: list[Row] = []
        known: list[Row] = []
        for row in rows:
            (fresh if row[1] > moved[row[0]] else known).append(row)
        return fresh, known

    async def move_quietly(self) -> None:
        """`move`, logging a failure instead of raising it: the batches are committed, and
        the rows wait in `readings_recent` (where readers find them) for the next move."""
        try:
            await self.move()
            if self._move_failed:
                log.info("recent readings moved into the ledger's readings table again")
            self._move_failed = False
        except sqlite3.Error as exc:
            self._moved_at = time.monotonic()  # tried again after MOVE_SECONDS
            if not self._move_failed:
                log.warning("moving recent readings into the ledger's readings table failed "
                            "(they stay in readings_recent, where they are read too; tried "
                            "again every %.0f s): %s", MOVE_SECONDS, exc)
            self._move_failed = True

    async def move(self) -> int:
        """Move every row of `readings_recent` into `readings` and add their minutes to
        `readings_1m`, in one transaction of a few statements per ~`MOVE_CHUNK` rows (whole
        series at a time, in key order), giving the event loop its turns between them;
        returns the number of rows moved."""
        conn = self._conn or self._open()
        await self._begin(conn)
        moved = 0
        try:
            turns = Turns()
            counts = await self._recent_series(conn, turns)
            minutes = self._minutes()
            for first, last, rows in _chunks(counts, MOVE_CHUNK):
                await turns.maybe()
                inserted = conn.execute(MOVE_SERIES, (first, last)).rowcount
                await turns.maybe()
                if inserted == rows and minutes is not None:
                    for minute in minutes:
                        conn.execute(rollup.ADD_RECENT_MINUTE, (first, last, minute))
                elif inserted == rows:
                    conn.execute(rollup.ADD_RECENT, (first, last))
                else:  # some were in `readings` already: rebuild their minutes from there
                    log.warning("%d recent readings were in the readings table already; their "
                                "minutes are summed again", rows - max(inserted, 0))
                    conn.executemany(rollup.RECOMPUTE,
                                     conn.execute(TOUCHED, (first, last)).fetchall())
                moved += rows
            await turns.maybe()
            conn.execute("DELETE FROM readings_recent")
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        for sid, _n, ts in counts:
            if ts > self._moved.get(sid, NOTHING):
                self._moved[sid] = ts
        self._moved_top = max(self._moved.values(), default=NOTHING)
        self._waiting = 0
        self._span = (-NOTHING, NOTHING)  # empty: every row committed from now on widens it
        self._moved_at = time.monotonic()
        self.moves_done += 1
        self._maybe_checkpoint()
        return moved

    def _minutes(self) -> list[int] | None:
        """The starts of the minutes readings_recent's rows fall in, when they are known to be
        at most `MINUTE_STATEMENTS`; None otherwise."""
        if self._span is None:
            return None
        oldest, newest = self._span
        first = oldest - oldest % rollup.MINUTE
        if oldest < 0 or newest < first or (newest - first) // rollup.MINUTE >= MINUTE_STATEMENTS:
            return None  # (before 1970, SQLite's `ts % 60000000` rounds toward zero instead)
        return list(range(first, newest + 1, rollup.MINUTE))

    async def _recent_series(self, conn: sqlite3.Connection, turns: Turns
                             ) -> list[tuple[int, int, int]]:
        """(series, rows, newest ts) of every series in `readings_recent`, in series order,
        counted a range of series ids at a time with the loop's turns between: in one
        statement, 600,000 rows (20,000 tags, half a minute) held the loop for 60 ms."""
        low, high = conn.execute(RECENT_SPAN).fetchone()
        if low is None:
            return []
        # ids per statement: about MOVE_CHUNK rows' worth, as the rows since the last move
        # spread over the ids (all of them at once when that is not known, after a restart)
        width = high - low + 1
        if self._waiting:
            width = max(1, width * MOVE_CHUNK // self._waiting)
        counts: list[tuple[int, int, int]] = []
        for first in range(low, high + 1, width):
            await turns.maybe()
            counts += conn.execute(RECENT_SERIES, (first, first + width - 1)).fetchall()
        return counts

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
        if self.moves and self._conn is not None:
            await self.move_quietly()
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        conn.execute("PRAGMA busy_timeout=0")  # never wait on the loop's thread (see _begin)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on a thread instead
        if self.moves and self._span is None and conn.execute(
                "SELECT 1 FROM readings_recent LIMIT 1").fetchone() is None:
            self._span = (-NOTHING, NOTHING)  # nothing waits (the last stop moved it all)
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


def _chunks(counts: Sequence[tuple[int, int, int]], most: int) -> list[tuple[int, int, int]]:
    """(first series, last series, rows) ranges of whole series, each of about `most` rows
    (one series alone may have more), from (series, rows, newest ts) in series order."""
    out: list[tuple[int, int, int]] = []
    first = rows = 0
    for sid, n, _ts in counts:
        if rows == 0:
            first = sid
        rows += n
        if rows >= most:
            out.append((first, sid, rows))
            rows = 0
    if rows:
        out.append((first, counts[-1][0], rows))
    return out


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


_INSERTS = _forms(INSERT, rollup.READING_COLUMNS, (_NUMBER, _INTEGER))


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
