"""`collector db copy`: a whole ledger from one database into another (SQLite ⇄ PostgreSQL).

Every table of the ledger's schema is copied in primary-key order, in batches. Each batch is
committed in the target together with a progress marker (table `collector_copy_progress`), so
a copy that was interrupted (a kill, a power cut, a lost connection) continues after the last
committed batch when the same command runs again; a row that is already in the target is never
inserted twice (a conflicting key goes through `ON CONFLICT DO NOTHING` and must hold the same
values). On PostgreSQL the rows go in by binary COPY, as the writer's do.

Before copying, the target is created or migrated by the ledger's own migrations; the source
must be at the same revision. At the end both sides are counted per table (rows, values per
column, sums of the integer columns, lengths of the text columns) and the counts must agree;
the marker table is then dropped.

The source must not change while it is copied: a collector writing to it is refused up front
where that can be seen (another process with the SQLite file open; rows of a PostgreSQL
source changing while it is watched for a few seconds) and otherwise shows at the end as a
source that changed during the copy.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Float, Integer, SmallInteger, String, Table, Text
from sqlalchemy.engine import URL, make_url

from collector.ledger.engine import LedgerURLError, async_url, create_engine, current_revision
from collector.ledger.exact import UINT64_END, exact_value, stored_int, wide_postgres, wide_sqlite
from collector.ledger.schema import metadata
from collector.ledger.timescale import use_timescale

PROGRESS = "collector_copy_progress"
APPLICATION = "collector-db-copy"  # in pg_stat_activity
WATCH_SECONDS = 2.5  # how long a PostgreSQL source is watched for writes before copying
MODULUS = 1_000_000_007  # integer sums are taken modulo this, so no database overflows

# (value column, exact integer column) pairs that hold a uint64 differently per database
EXACT = {
    "readings": ("value", "value_int"),
    "latest_readings": ("value", "value_int"),
    "readings_1m": ("last_value", "last_int"),
}

Row = tuple[Any, ...]


class CopyError(RuntimeError):
    """A copy that cannot be made or was refused; the message says what to change."""


@dataclass
class TableCopy:
    name: str
    source_rows: int = 0
    copied: int = 0  # rows inserted by this run
    seconds: float = 0.0
    resumed: bool = False

    @property
    def rate(self) -> float:
        return self.copied / self.seconds if self.seconds > 0 else 0.0


@dataclass
class CopyResult:
    source: str
    target: str
    revision: str
    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0
    already: bool = False  # the target already was a complete copy

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.tables)

    def report(self) -> list[str]:
        lines = [f"{self.source} -> {self.target}, ledger schema revision {self.revision}"]
        width = max(len(t.name) for t in self.tables)
        for t in self.tables:
            line = f"  {t.name:<{width}}  {t.source_rows:>12,} rows"
            if t.copied:
                line += f"  copied {t.copied:,} in {t.seconds:.1f} s ({t.rate:,.0f} rows/s)"
            elif t.source_rows:
                line += "  already in the target"
            if t.resumed:
                line += ", continued where the last run stopped"
            lines.append(line)
        if self.already:
            lines.append("the target already holds this copy: nothing to do")
        rate = self.copied / self.seconds if self.seconds > 0 else 0.0
        done = (f"{self.copied:,} rows copied in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
                if self.copied else f"checked in {self.seconds:.1f} s")
        lines.append(f"verified: every table has the same rows and counts on both sides; {done}")
        return lines


def tables() -> list[Table]:
    """The ledger's tables, parents (machines, series) first."""
    return list(metadata.tables.values())  # in the order schema.py defines them


def _key(table: Table) -> list[str]:
    return [c.name for c in table.primary_key.columns]


def _columns(table: Table) -> list[str]:
    return [c.name for c in table.columns]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- the two kinds of database ----------------------------------------------------------------


class Side:
    """One end of the copy: reads pages of a table in key order, writes batches with the
    progress marker in one transaction, and counts a table for the verification."""

    dialect: str
    shown: str  # the URL without its password, and the schema
    origin = ""  # the source the progress markers name (on the target)

    async def revision(self) -> str | None:
        raise NotImplementedError

    async def read(self, table: Table, after: Row | None, limit: int) -> list[Row]:
        raise NotImplementedError

    async def write(self, table: Table, rows: list[Row], marker: tuple[str, str, int]) -> int:
        raise NotImplementedError

    async def fingerprint(self, table: Table) -> tuple[Any, ...]:
        raise NotImplementedError

    async def markers(self) -> dict[str, tuple[str, Row, int]]:
        raise NotImplementedError

    async def drop_markers(self) -> None:
        raise NotImplementedError

    async def writers(self) -> list[str]:
        """Other processes that look like a collector writing here, in words."""
        return []

    async def close(self) -> None:
        raise NotImplementedError


def _fingerprint_parts(table: Table, nan: Callable[[str], str]) -> list[tuple[str, str]]:
    """(label, SQL) of what is counted: rows and, per column, its values (NaN as none), the
    sum of an integer column, the lengths of a text column."""
    exact = EXACT.get(table.name, (None, None))[1]
    parts = [("rows", "count(*)")]
    for col in table.columns:
        name = _quote(col.name)
        if isinstance(col.type, Float):
            parts.append((f"{col.name} values", f"count({nan(name)})"))
            continue
        parts.append((f"{col.name} values", f"count({name})"))
        if col.name == exact:
            continue  # stored differently per database; its count and `value` cover it
        if isinstance(col.type, BigInteger | Integer | SmallInteger):
            parts.append((f"{col.name} sum", f"sum({name} % {MODULUS})"))
        elif isinstance(col.type, String | Text):
            parts.append((f"{col.name} length", f"sum(length({name}))"))
    return parts


def _fingerprint_sql(table: Table, nan: Callable[[str], str]) -> str:
    parts = ", ".join(sql for _label, sql in _fingerprint_parts(table, nan))
    return f"SELECT {parts} FROM {_quote(table.name)}"


def _after_sql(key: list[str], start: int, mark: Callable[[int], str]) -> str:
    if len(key) == 1:
        return f"{_quote(key[0])} > {mark(start)}"
    cols = ", ".join(_quote(k) for k in key)
    marks = ", ".join(mark(start + i) for i in range(len(key)))
    return f"({cols}) > ({marks})"


class SqliteSide(Side):
    dialect = "sqlite"

    def __init__(self, path: Path, shown: str, *, create: bool):
        self.path = path
        self.shown = shown
        if not create and not path.is_file():
            raise CopyError(f"{shown}: {str(path.absolute())!r} does not exist: check the path "
                            "(sqlite:///relative/path.db or sqlite:////absolute/path.db)")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                        check_same_thread=False)
            for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"):
                self.conn.execute(pragma)
        else:  # the source is only read
            self.conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                        timeout=30, isolation_level=None,
                                        check_same_thread=False)
        try:
            self.conn.execute("PRAGMA cache_size=-65536")
            self.version = self._data_version()
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise CopyError(f"{shown} is not a SQLite ledger ({exc}): check the path") from None

    def _data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        """Whether another connection has committed to the file since this one opened it."""
        return self._data_version() != self.version

    async def revision(self) -> str | None:
        found = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone()
        if found is None:
            return None
        row = self.conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None

    def _read(self, table: Table, after: Row | None, limit: int) -> list[Row]:
        cols = ", ".join(_quote(c) for c in _columns(table))
        key = _key(table)
        order = ", ".join(_quote(k) for k in key)
        where = f"WHERE {_after_sql(key, 1, lambda i: '?')} " if after is not None else ""
        sql = f"SELECT {cols} FROM {_quote(table.name)} {where}ORDER BY {order} LIMIT {limit}"
        return self.conn.execute(sql, after or ()).fetchall()

    async def read(self, table: Table, after: Row | None, limit: int) -> list[Row]:
        return await asyncio.to_thread(self._read, table, after, limit)

    def _write(self, table: Table, rows: list[Row], marker: tuple[str, str, int]) -> int:
        cols = _columns(table)
        names = ", ".join(_quote(c) for c in cols)
        marks = ", ".join("?" for _ in cols)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(f"INSERT INTO {_quote(table.name)} ({names}) VALUES ({marks}) "
                             "ON CONFLICT DO NOTHING", rows)
            inserted = conn.total_changes - before
            if inserted < len(rows):
                self._compare(table, rows)
            self._mark(marker)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return inserted

    def _compare(self, table: Table, rows: list[Row]) -> None:
        """Rows already in the target hold the same values, or the copy stops."""
        cols = _columns(table)
        stage = _quote(f"_copy_{table.name}")
        names = ", ".join(_quote(c) for c in cols)
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS "
                          f"SELECT {names} FROM {_quote(table.name)} WHERE 0")
        self.conn.execute(f"DELETE FROM {stage}")
        self.conn.executemany(f"INSERT INTO {stage} ({names}) VALUES "
                              f"({', '.join('?' for _ in cols)})", rows)
        on = " AND ".join(f"s.{_quote(k)} = t.{_quote(k)}" for k in _key(table))
        differ = " OR ".join(f"s.{_quote(c)} IS NOT t.{_quote(c)}" for c in cols)
        found = self.conn.execute(
            f"SELECT {', '.join('s.' + _quote(c) for c in cols)}, "
            f"{', '.join('t.' + _quote(c) for c in cols)} FROM {stage} s "
            f"JOIN {_quote(table.name)} t ON {on} WHERE {differ} LIMIT 1").fetchone()
        if found is not None:
            raise _conflict(table, self.shown, found[:len(cols)], found[len(cols):])

    def _mark(self, marker: tuple[str, str, int]) -> None:
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS {PROGRESS} (tbl VARCHAR(64) PRIMARY KEY, "
                          "source TEXT NOT NULL, last_key TEXT NOT NULL, rows BIGINT NOT NULL)")
        name, last, rows = marker
        self.conn.execute(
            f"INSERT INTO {PROGRESS} (tbl, source, last_key, rows) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tbl) DO UPDATE SET source = excluded.source, "
            f"last_key = excluded.last_key, rows = {PROGRESS}.rows + excluded.rows",
            (name, self.origin, last, rows))

    async def write(self, table: Table, rows: list[Row], marker: tuple[str, str, int]) -> int:
        return await asyncio.to_thread(self._write, table, rows, marker)

    async def fingerprint(self, table: Table) -> tuple[Any, ...]:
        sql = _fingerprint_sql(table, lambda c: c)
        return tuple(await asyncio.to_thread(lambda: self.conn.execute(sql).fetchone()))

    async def markers(self) -> dict[str, tuple[str, Row, int]]:
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (PROGRESS,)
                             ).fetchone() is None:
            return {}
        return {t: (s, tuple(json.loads(k)), n) for t, s, k, n in self.conn.execute(
            f"SELECT tbl, source, last_key, rows FROM {PROGRESS}")}

    async def drop_markers(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {PROGRESS}")

    async def writers(self) -> list[str]:
        return open_by_others(self.path)

    async def close(self) -> None:
        self.conn.close()


class PostgresSide(Side):
    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection, shown: str):
        self.conn = conn
        self.shown = shown

    @classmethod
    async def connect(cls, url: URL, schema: str | None, shown: str) -> PostgresSide:
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        settings = {"application_name": APPLICATION}
        if schema:
            settings["search_path"] = schema
        try:
            conn = await asyncpg.connect(dsn, server_settings=settings, timeout=10)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise CopyError(f"cannot connect to {shown}: {_one_line(exc)}") from None
        return cls(conn, shown)

    async def revision(self) -> str | None:
        exists = await self.conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        if not exists:
            return None
        return await self.conn.fetchval("SELECT version_num FROM alembic_version")

    async def read(self, table: Table, after: Row | None, limit: int) -> list[Row]:
        cols = ", ".join(_quote(c) for c in _columns(table))
        key = _key(table)
        order = ", ".join(_quote(k) for k in key)
        where = f"WHERE {_after_sql(key, 1, lambda i: f'${i}')} " if after is not None else ""
        sql = f"SELECT {cols} FROM {_quote(table.name)} {where}ORDER BY {order} LIMIT {limit}"
        return [tuple(r) for r in await self.conn.fetch(sql, *(after or ()))]

    async def write(self, table: Table, rows: list[Row], marker: tuple[str, str, int]) -> int:
        cols = _columns(table)
        conn = self.conn
        async with conn.transaction():
            try:
                async with conn.transaction():  # a savepoint: a conflict undoes only the COPY
                    await conn.copy_records_to_table(table.name, records=rows, columns=cols)
                inserted = len(rows)
            except asyncpg.UniqueViolationError:
                inserted = await self._insert_missing(table, rows)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {PROGRESS} (tbl varchar(64) PRIMARY KEY, "
                "source text NOT NULL, last_key text NOT NULL, rows bigint NOT NULL)")
            name, last, n = marker
            await conn.execute(
                f"INSERT INTO {PROGRESS} (tbl, source, last_key, rows) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (tbl) DO UPDATE SET source = excluded.source, "
                f"last_key = excluded.last_key, rows = {PROGRESS}.rows + excluded.rows",
                name, self.origin, last, n)
        return inserted

    async def _insert_missing(self, table: Table, rows: list[Row]) -> int:
        """Through a staging table with ON CONFLICT DO NOTHING; rows already there must hold
        the same values."""
        cols = _columns(table)
        names = ", ".join(_quote(c) for c in cols)
        stage = _quote(f"_copy_{table.name}")
        await self.conn.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} AS SELECT {names} FROM "
            f"{_quote(table.name)} WITH NO DATA")
        await self.conn.execute(f"TRUNCATE {stage}")
        await self.conn.copy_records_to_table(f"_copy_{table.name}", records=rows, columns=cols)
        on = " AND ".join(f"s.{_quote(k)} = t.{_quote(k)}" for k in _key(table))
        s_cols = ", ".join("s." + _quote(c) for c in cols)
        t_cols = ", ".join("t." + _quote(c) for c in cols)
        found = await self.conn.fetchrow(
            f"SELECT {s_cols}, {t_cols} FROM {stage} s JOIN {_quote(table.name)} t ON {on} "
            f"WHERE ({s_cols}) IS DISTINCT FROM ({t_cols}) LIMIT 1")
        if found is not None:
            values = tuple(found)
            raise _conflict(table, self.shown, values[:len(cols)], values[len(cols):])
        status = await self.conn.execute(
            f"INSERT INTO {_quote(table.name)} ({names}) SELECT {names} FROM {stage} "
            "ON CONFLICT DO NOTHING")
        return int(status.rsplit(" ", 1)[-1])

    async def fingerprint(self, table: Table) -> tuple[Any, ...]:
        row = await self.conn.fetchrow(_fingerprint_sql(table, lambda c: f"nullif({c}, 'NaN')"))
        return tuple(None if v is None else int(v) for v in row)

    async def markers(self) -> dict[str, tuple[str, Row, int]]:
        if not await self.conn.fetchval(f"SELECT to_regclass('{PROGRESS}') IS NOT NULL"):
            return {}
        return {r[0]: (r[1], tuple(json.loads(r[2])), r[3]) for r in await self.conn.fetch(
            f"SELECT tbl, source, last_key, rows FROM {PROGRESS}")}

    async def drop_markers(self) -> None:
        await self.conn.execute(f"DROP TABLE IF EXISTS {PROGRESS}")

    async def writers(self) -> list[str]:
        """Rows inserted, updated or deleted in readings and latest_readings over a few
        seconds (a collector commits a batch every flush_interval, 1 s by default)."""
        sql = ("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM "
               "pg_stat_user_tables WHERE relid IN (to_regclass('readings'), "
               "to_regclass('latest_readings'))")
        before = await self.conn.fetchval(sql)
        await asyncio.sleep(WATCH_SECONDS)
        changed = int(await self.conn.fetchval(sql) - before)
        if changed <= 0:
            return []
        return [f"a writer: {changed:,} rows of readings and latest_readings changed in the "
                f"last {WATCH_SECONDS:g} s"]

    async def close(self) -> None:
        await self.conn.close()


def _one_line(exc: BaseException) -> str:
    """The first line of an error, without SQLAlchemy's wrapping of the driver's."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    line = text[0] if text else type(cause).__name__
    return line.split(") ", 1)[-1] if line.startswith("(sqlalchemy") else line


def _conflict(table: Table, shown: str, source: Row, target: Row) -> CopyError:
    key = _key(table)
    cols = _columns(table)
    where = ", ".join(f"{k}={source[cols.index(k)]!r}" for k in key)
    differ = [f"{c}: {source[i]!r} in the source, {target[i]!r} in the target"
              for i, c in enumerate(cols) if source[i] != target[i]
              and not (isinstance(source[i], float) and isinstance(target[i], float)
                       and math.isnan(source[i]) and math.isnan(target[i]))]
    return CopyError(
        f"table {table.name}, row {where}: the target {shown} already holds different data "
        f"for this key ({'; '.join(differ)}). The target is not empty and not a copy of this "
        "source: copy into an empty database (or another --schema), or remove what is there")


def open_by_others(path: Path) -> list[str]:
    """Processes other than this one that have the SQLite file open (Linux /proc; those this
    user may see), in words."""
    try:
        target = path.resolve()
        names = {str(target), str(target) + "-wal"}
        procs = os.listdir("/proc")
    except OSError:
        return []
    found = []
    me = os.getpid()
    for pid in procs:
        if not pid.isdigit() or int(pid) == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in names:
                    break
            except OSError:
                continue
        else:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        found.append(f"process {pid} ({cmd[:120]})")
    return found


# --- the copy ---------------------------------------------------------------------------------


def _parse(url: str, flag: str) -> URL:
    try:
        return make_url(async_url(url))
    except LedgerURLError as exc:
        text = str(exc)
        prefix = f"ledger.url {url!r}"
        rest = text[len(prefix):] if text.startswith(prefix) else f": {text}"
        raise CopyError(f"{flag} {url!r}{rest}") from None


def _shown(url: URL, schema: str | None) -> str:
    text = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)
    return f"{text} (schema {schema})" if schema and url.get_backend_name() != "sqlite" else text


def _head() -> str:
    from alembic.script import ScriptDirectory

    from collector.ledger.engine import _alembic_config

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _file(url: URL) -> Path:
    return Path(url.database or "").expanduser()


def _same_file(a: URL, b: URL) -> bool:
    return _file(a).resolve() == _file(b).resolve()


async def _open(url: URL, schema: str | None, *, create: bool) -> Side:
    shown = _shown(url, schema)
    if url.get_backend_name() == "sqlite":
        return SqliteSide(_file(url), shown, create=create)
    return await PostgresSide.connect(url, schema, shown)


async def _migrate(url: URL, schema: str | None, shown: str) -> str | None:
    """The target's schema created or brought to the head by the ledger's migrations."""
    from collector.ledger.engine import upgrade

    try:
        engine = create_engine(url.render_as_string(hide_password=False), schema=schema)
    except OSError as exc:
        raise CopyError(f"cannot create the target {shown}: {exc.strerror or exc} "
                        f"({exc.filename})") from None
    try:
        await upgrade(engine, schema)
        if engine.dialect.name == "postgresql":
            await use_timescale(engine)
        return await current_revision(engine)
    except CopyError:
        raise
    except OSError as exc:
        raise CopyError(f"cannot reach or create the target {shown}: {exc.strerror or exc} "
                        f"({exc.filename or 'check host, port and that the server runs'})"
                        ) from None
    except Exception as exc:
        text = _one_line(exc)
        if "Can't locate revision" in text:
            raise CopyError(f"{shown} has a ledger schema newer than this collector knows "
                            f"({text}): copy with the collector version that wrote it") from None
        raise CopyError(f"cannot create or migrate the ledger schema in {shown}: {text}"
                        ) from None
    finally:
        await engine.dispose()


def _convert(table: Table, source: str, target: str) -> Callable[[list[Row]], list[Row]] | None:
    """Rows of `table` from a `source` database into a `target` one: a uint64 of 2^63 or more
    is kept as digits on SQLite and minus 2^64 on PostgreSQL (`exact`)."""
    pair = EXACT.get(table.name)
    if pair is None or source == target:
        return None
    cols = _columns(table)
    vi, ii = cols.index(pair[0]), cols.index(pair[1])
    wide = wide_sqlite if target == "sqlite" else wide_postgres

    def convert(rows: list[Row]) -> list[Row]:
        out = []
        for row in rows:
            stored = row[ii]
            if stored is None or (stored.__class__ is int and stored >= 0):
                out.append(row)
                continue
            exact = exact_value(row[vi], stored)
            if isinstance(exact, int) and exact >= UINT64_END // 2:
                row = (*row[:ii], stored_int(exact, wide), *row[ii + 1:])
            out.append(row)
        return out

    return convert


async def copy_ledger(source_url: str, target_url: str, *, schema: str | None = None,
                      source_schema: str | None = None, batch: int = 20_000,
                      progress: Callable[[str], None] | None = None) -> CopyResult:
    """Copy every ledger table from `source_url` to `target_url` (see the module's text);
    `schema` is the target's PostgreSQL schema, `source_schema` the source's."""
    if batch < 1:
        raise CopyError(f"--batch {batch}: give a number of rows of at least 1")
    src_url = _parse(source_url, "--from")
    dst_url = _parse(target_url, "--to")
    src_schema = source_schema if src_url.get_backend_name() == "postgresql" else None
    dst_schema = schema if dst_url.get_backend_name() == "postgresql" else None
    src_shown, dst_shown = _shown(src_url, src_schema), _shown(dst_url, dst_schema)
    if src_url.get_backend_name() == "sqlite" and dst_url.get_backend_name() == "sqlite":
        if _same_file(src_url, dst_url):
            raise CopyError(f"--from and --to are the same file {src_shown}: choose another --to")
    elif src_url.set(query={}) == dst_url.set(query={}) and src_schema == dst_schema:
        raise CopyError(f"--from and --to are the same ledger {src_shown}: choose another "
                        "--to or --schema")
    say = progress or (lambda _line: None)
    started = time.monotonic()

    source = await _open(src_url, src_schema, create=False)
    target: Side | None = None
    try:
        head = _head()
        have = await source.revision()
        if have != head:
            if have is None:
                raise CopyError(f"{src_shown} holds no ledger (no alembic_version table): "
                                "check --from")
            raise CopyError(
                f"the source {src_shown} is at ledger schema revision {have} and this collector's "
                f"is {head}: bring the source up to date first with `collector db upgrade -c "
                f"CONFIG` (a config whose ledger.url is the source), then copy")
        busy = await source.writers()
        if busy:
            raise CopyError(
                f"the source {src_shown} is in use by {'; '.join(busy)}: stop the collector "
                "that writes to it first (sudo systemctl stop collector, or docker compose stop "
                "collector); it writes what it holds and exits. Then copy")

        revision = await _migrate(dst_url, dst_schema, dst_shown)
        if revision != head:
            raise CopyError(f"the target {dst_shown} is at revision {revision}, not {head}")
        target = await _open(dst_url, dst_schema, create=True)
        identity = src_shown
        target.origin = identity
        result = CopyResult(src_shown, dst_shown, head)

        markers = await target.markers()
        others = {m[0] for m in markers.values()} - {identity}
        if others:
            raise CopyError(
                f"the target {dst_shown} holds a copy in progress from {sorted(others)[0]}: "
                "finish that one (run it again) or copy into another database or --schema")
        counts = {t.name: await source.fingerprint(t) for t in tables()}
        if not markers:
            theirs = {t.name: await target.fingerprint(t) for t in tables()}
            if any(fp[0] for fp in theirs.values()):
                if theirs == counts:
                    result.already = True
                    result.tables = [TableCopy(t.name, counts[t.name][0]) for t in tables()]
                    result.seconds = time.monotonic() - started
                    return result
                await _refuse_foreign(source, target, theirs, dst_shown)

        for table in tables():
            done = markers.get(table.name)
            item = TableCopy(table.name, counts[table.name][0], resumed=done is not None)
            result.tables.append(item)
            after: Row | None = done[1] if done else None
            convert = _convert(table, source.dialect, target.dialect)
            key_at = [_columns(table).index(k) for k in _key(table)]
            t0 = time.monotonic()
            last_said = t0
            pending = asyncio.ensure_future(source.read(table, after, batch))
            while True:
                rows = await pending
                if not rows:
                    break
                after = tuple(rows[-1][i] for i in key_at)
                pending = asyncio.ensure_future(source.read(table, after, batch))
                if convert is not None:
                    rows = convert(rows)
                try:
                    item.copied += await target.write(
                        table, rows, (table.name, json.dumps(list(after)), len(rows)))
                except CopyError:
                    pending.cancel()
                    raise
                except (asyncpg.PostgresError, sqlite3.Error) as exc:
                    pending.cancel()
                    raise CopyError(
                        f"table {table.name}, rows after key {list(after)}: the target "
                        f"{dst_shown} refused them: {_one_line(exc)}") from None
                now = time.monotonic()
                if now - last_said >= 5:
                    last_said = now
                    say(f"{table.name}: {item.copied:,} of {item.source_rows:,} rows "
                        f"({item.copied / (now - t0):,.0f} rows/s)")
            item.seconds = time.monotonic() - t0
            if table.name == "series" and target.dialect == "postgresql":
                await _advance_sequence(target)  # type: ignore[arg-type]

        await _verify(source, target, counts, src_shown, dst_shown)
        await target.drop_markers()
        result.seconds = time.monotonic() - started
        return result
    finally:
        await source.close()
        if target is not None:
            await target.close()


async def _advance_sequence(target: PostgresSide) -> None:
    """Series created after the copy get ids after the copied ones."""
    await target.conn.execute(
        "SELECT setval(pg_get_serial_sequence('series', 'id'), "
        "greatest((SELECT max(id) FROM series), 1))")


async def _refuse_foreign(source: Side, target: Side, theirs: dict[str, tuple[Any, ...]],
                          shown: str) -> None:
    """The target holds a ledger that is not (the start of) this copy: say where it differs."""
    for table in tables():
        if table.name not in ("machines", "series"):  # small, and what every key refers to
            continue
        key_at = [_columns(table).index(k) for k in _key(table)]
        mine = {tuple(r[i] for i in key_at): r for r in await source.read(table, None, 10**6)}
        for row in await target.read(table, None, 10**6):
            k = tuple(row[i] for i in key_at)
            if k in mine and mine[k] != row:
                raise _conflict(table, shown, mine[k], row)
    filled = ", ".join(f"{name}: {fp[0]:,} rows" for name, fp in theirs.items() if fp[0])
    raise CopyError(
        f"the target {shown} already holds a ledger ({filled}) that is not a copy of this "
        "source: copy into an empty database or another --schema (a collector started against "
        "the target before the copy has created its own machines and series there)")


async def _verify(source: Side, target: Side, before: dict[str, tuple[Any, ...]],
                  src_shown: str, dst_shown: str) -> None:
    for table in tables():
        now = await source.fingerprint(table)
        if now != before[table.name] or (isinstance(source, SqliteSide) and source.changed()):
            raise CopyError(
                f"the source {src_shown} changed during the copy (table {table.name}: "
                f"{before[table.name][0]:,} rows, now {now[0]:,}): a collector is still writing "
                "to it. Stop it, then run the same command again: the copy continues")
        theirs = await target.fingerprint(table)
        if theirs != now:
            labels = [label for label, _sql in _fingerprint_parts(table, str)]
            differ = "; ".join(f"{label}: {x} in the source, {y} in the target"
                               for label, x, y in zip(labels, now, theirs, strict=True) if x != y)
            raise CopyError(
                f"table {table.name} differs after the copy from {src_shown} to {dst_shown} "
                f"({differ}): the target held other rows before the copy. Copy into an empty "
                "database or another --schema")
