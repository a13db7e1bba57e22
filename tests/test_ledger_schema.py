"""`ledger.schema` on a PostgreSQL where that schema does not exist yet: created when the role
may; otherwise one log line saying what an administrator runs, readings spooled meanwhile and
written once the schema exists."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from collector import runtime as runtime_module
from collector.config import parse_config
from collector.ledger import Ledger, LedgerSchemaMissing
from collector.model import Reading, now_us
from collector.runtime import Runtime
from tests.kit.postgres import PG_URL, psql
from tests.kit.waiting import wait_for


def config(tmp_path: Path, url: str, schema: str) -> str:
    return (f"box: schema-box\nledger:\n  url: {url}\n  schema: {schema}\n"
            f"spool:\n  path: {tmp_path}/spool.db\npipeline:\n  flush_interval: 50ms\n"
            "api:\n  enabled: false\nmachines: [{id: press07}]\n")


@pytest.fixture
def new_schema() -> Iterator[str]:
    """A schema name nobody has created; dropped afterwards if a test created it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        psql(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def plain_role() -> Iterator[str]:
    """A login role without CREATE on the database (it may not create schemas)."""
    name = f"r_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE ROLE {name} LOGIN; REVOKE CREATE ON DATABASE test FROM {name}")
    try:
        yield name
    finally:
        psql(f"DROP OWNED BY {name} CASCADE; DROP ROLE IF EXISTS {name}")


def as_role(role: str) -> str:
    return PG_URL.replace("postgres@", f"{role}@", 1)


async def tables_in(schema: str) -> set[str]:
    ledger = Ledger(PG_URL)
    try:
        async with ledger.engine.connect() as conn:
            rows = await conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema})
            return {r[0] for r in rows}
    finally:
        await ledger.close()


async def test_a_missing_schema_is_created_when_the_role_may(
        tmp_path: Path, new_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with Runtime(parse_config(config(tmp_path, PG_URL, new_schema))) as rt:
        assert rt.ledger.ready and rt.pipeline.ledger_ok
        await rt.pipeline.put([Reading("press07", "current", now_us(), 4.5)], wait=True)
        async with rt.ledger.engine.connect() as conn:
            assert (await conn.execute(text("SELECT value FROM readings"))).scalars().all() == [4.5]
    assert {"readings", "series", "machines", "alembic_version"} <= await tables_in(new_schema)
    assert f"ledger schema {new_schema!r} created" in caplog.messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_missing_schema_the_role_may_not_create_is_named_once_with_the_statement(
        tmp_path: Path, new_schema: str, plain_role: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "LEDGER_RETRY_MIN", 0.05)
    monkeypatch.setattr(runtime_module, "LEDGER_RETRY_MAX", 0.1)
    caplog.set_level(logging.INFO)
    statement = f"CREATE SCHEMA {new_schema} AUTHORIZATION {plain_role};"
    async with Runtime(parse_config(config(tmp_path, as_role(plain_role), new_schema))) as rt:
        assert not rt.ledger.ready
        first = now_us()
        await rt.pipeline.put([Reading("press07", "current", first + i, float(i)) for i in range(5)])
        await wait_for(lambda: rt.spool.backlog == 5, what="the readings spooled")
        await asyncio.sleep(1.0)  # retries every 0.1 s meanwhile, quietly
        assert not rt.ledger.ready
        told = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in told] == [
            f"ledger 127.0.0.1:5432/test: the database is reachable, but schema {new_schema!r} "
            f"does not exist and role {plain_role!r} may not create it: an administrator runs "
            f"`{statement}`; readings are spooled until the schema exists"]
        assert rt.pipeline.stats()["last_error"] == str(LedgerSchemaMissing(new_schema, plain_role))

        psql(statement)  # what the administrator does: the collector carries on by itself
        await wait_for(lambda: rt.ledger.ready and rt.pipeline.ledger_ok, within=20,
                       what="the ledger reached once the schema exists")
        await wait_for(lambda: rt.spool.backlog == 0, within=20, what="the spool replayed")
        async with rt.ledger.engine.connect() as conn:
            values = (await conn.execute(text(
                "SELECT value FROM readings ORDER BY ts"))).scalars().all()
        assert values == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_db_upgrade_names_the_statement_in_one_line(tmp_path: Path, new_schema: str,
                                                    plain_role: str) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(config(tmp_path, as_role(plain_role), new_schema))
    done = subprocess.run([sys.executable, "-m", "collector.cli", "db", "upgrade", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (1, (
        f"collector: cannot upgrade the ledger: the database is reachable, but schema "
        f"{new_schema!r} does not exist and role {plain_role!r} may not create it: an "
        f"administrator runs `CREATE SCHEMA {new_schema} AUTHORIZATION {plain_role};`\n"))
