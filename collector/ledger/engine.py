"""Connecting to the ledger database and bringing its schema up to date.

One code path for both backends: `sqlite:///file.db` (the box's default) and
`postgresql://user:pw@host/db` (a central ledger). URLs are given the async driver here, so a
technician writes the plain form; SQLite gets WAL and the pragmas a long-running writer needs.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:  # alembic (~10 MB) is loaded only when there is a migration to apply
    from alembic.config import Config

log = logging.getLogger("collector.ledger")

MIGRATIONS = Path(__file__).parent / "migrations"

SQLITE_PRAGMAS = (
    "PRAGMA page_size=8192",  # new files only: fewer, fuller b-tree pages for (series_id, ts)
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",  # durable at every checkpoint; WAL keeps commits atomic
    "PRAGMA busy_timeout=10000",
    "PRAGMA cache_size=-65536",  # 64 MiB page cache
    "PRAGMA temp_store=MEMORY",
    "PRAGMA wal_autocheckpoint=8192",  # checkpoint every ~64 MiB of WAL, not every ~4 MiB
    "PRAGMA journal_size_limit=134217728",  # and give the WAL file back beyond 128 MiB
    "PRAGMA foreign_keys=OFF",
)


class LedgerURLError(ValueError):
    pass


class LedgerSchemaMissing(RuntimeError):
    """The database answers, but `ledger.schema` does not exist and this role may not create
    it: waiting helps only once an administrator has created it."""

    def __init__(self, schema: str, role: str):
        self.schema = schema
        self.role = role
        self.statement = f"CREATE SCHEMA {_ident(schema)} AUTHORIZATION {_ident(role)};"
        super().__init__(
            f"the database is reachable, but schema {schema!r} does not exist and role {role!r} "
            f"may not create it: an administrator runs `{self.statement}`")


def _ident(name: str) -> str:
    """`name` as PostgreSQL reads it: plain when it is a plain lower-case word, else quoted."""
    if name.isascii() and name.replace("_", "a").isalnum() and name == name.lower() \
            and not name[:1].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


def async_url(url: str) -> str:
    """`sqlite:///x.db` → `sqlite+aiosqlite:///x.db`; `postgresql://` → `postgresql+asyncpg://`."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerURLError(
            f"ledger.url {url!r} is not a database URL "
            "(use sqlite:///data/ledger.db or postgresql://user:password@host/db)"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or parsed.database.startswith("file:"):
            raise LedgerURLError(
                f"ledger.url {url!r}: a SQLite ledger is a file on disk "
                "(sqlite:///data/ledger.db, or sqlite:////var/lib/collector/ledger.db)")
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise LedgerURLError(
            f"ledger.url {url!r}: backend {backend!r} is not supported (use sqlite or postgresql)"
        )
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, schema: str | None = None) -> AsyncEngine:
    """An async engine for the ledger; `schema` selects a PostgreSQL schema (search_path)."""
    full = make_url(async_url(url))
    kwargs: dict[str, Any] = {}
    if full.get_backend_name() == "sqlite":
        if full.database and full.database != ":memory:":
            Path(full.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        settings = {"application_name": "retrofit-collector"}
        if schema:
            settings["search_path"] = schema
        kwargs["connect_args"] = {"server_settings": settings, "timeout": 10}
        kwargs["pool_size"] = 5
        kwargs["max_overflow"] = 10
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(full, **kwargs)
    if full.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


_REVISION = re.compile(r'^(down_)?revision = (?:"([^"]+)"|None)', re.MULTILINE)


def head_revision() -> str | None:
    """The newest migration (the one no other revises), read from the `revision` and
    `down_revision` lines of the migration files; None when there is not exactly one."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for down, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            if value:
                (revised if down else revisions).add(value)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


async def at_head(engine: AsyncEngine) -> bool:
    """Whether the ledger has every migration already (as at nearly every start)."""
    head = head_revision()
    if head is None:
        return False
    try:
        async with engine.connect() as conn:
            found = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:  # a new ledger: no version table yet
        return False
    return [row[0] for row in found] == [head]


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def ensure_schema(engine: AsyncEngine, schema: str) -> bool:
    """Create the PostgreSQL schema `schema` when it is missing and the role may (True when it
    was created); `LedgerSchemaMissing` when the role may not."""
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"),
                                   {"s": schema})
        if found.first() is not None:
            return False
        role, may = (await conn.execute(text(
            "SELECT current_user, has_database_privilege(current_database(), 'CREATE')"))).one()
        if not may:
            raise LedgerSchemaMissing(schema, role)
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema.replace(chr(34), chr(34) * 2)}"'))
        await conn.commit()
    return True


async def upgrade(engine: AsyncEngine, schema: str | None = None) -> None:
    """Apply every pending migration (what `collector db upgrade` and start-up do); on
    PostgreSQL, `schema` (ledger.schema) is created first when it is missing and the role may."""
    if schema and engine.dialect.name == "postgresql" and await ensure_schema(engine, schema):
        log.info("ledger schema %r created", schema)
    if await at_head(engine):
        return
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
