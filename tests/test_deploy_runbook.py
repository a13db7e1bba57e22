"""deploy/README.md's runbook, run: the PostgreSQL statements for a server without Docker give
a collector role that migrates and writes a ledger (and takes it back a revision) and a Grafana
role that only reads; the box config and its env file agree on the API key; a rollback after a
migration by `collector db downgrade` and by restoring `collector db backup`'s copy."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from collector.config import load_config
from collector.ledger import Ledger, MachineInfo, SeriesInfo
from collector.ledger.revisions import head
from collector.model import Reading
from tests.kit.postgres import PG_URL
from tests.kit.programs import need_program

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
T0 = 1_764_000_000_000_000


def marked_block(text: str, mark: str) -> str:
    """The fenced block right after `<!-- docs-test: mark -->`."""
    found = re.search(rf"<!-- docs-test: {mark} -->\n```\w*\n(.*?)```", text, re.S)
    assert found, f"no block marked {mark}"
    return found.group(1)


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def collector(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})


def test_the_box_config_takes_the_api_key_from_the_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = env_file(DEPLOY / "systemd/collector.env")
    config_text = (DEPLOY / "systemd/collector.yaml").read_text()
    used = set(re.findall(r"^[^#\n]*\$\{(\w+)\}", config_text, re.M))
    assert used == {"COLLECTOR_API_KEY"} <= secrets.keys()
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    config = load_config(DEPLOY / "systemd/collector.yaml")
    assert config.api.api_keys == [secrets["COLLECTOR_API_KEY"]]
    assert config.ledger.url == "sqlite:////var/lib/collector/ledger.db"
    assert str(config.spool_path()).startswith("/var/lib/collector/")
    unit = (DEPLOY / "systemd/collector.service").read_text()
    assert "EnvironmentFile=-/etc/collector/collector.env" in unit
    assert "ReadWritePaths=/var/lib/collector" in unit
    # loaded the way the README checks it, and refused without the env file
    loaded = subprocess.run(
        ["sh", "-c", f"set -a; . {DEPLOY}/systemd/collector.env; exec {sys.executable} -m "
                     f"collector.cli check -c {DEPLOY}/systemd/collector.yaml"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "COLLECTOR_API_KEY"})
    assert loaded.returncode == 0 and loaded.stdout.strip() == "1 machine, 1 source, 3 tags"
    monkeypatch.delenv("COLLECTOR_API_KEY")
    bare = collector("check", "-c", DEPLOY / "systemd/collector.yaml")
    assert bare.returncode == 2 and "COLLECTOR_API_KEY is not set" in bare.stderr


@pytest.mark.postgres
def test_the_runbook_roles_migrate_write_and_only_read(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    db, writer, reader = f"plant_{tag}", f"collector_{tag}", f"grafana_{tag}"
    sql = marked_block((DEPLOY / "README.md").read_text(), "postgres-roles")
    for word, name in (("plant", db), ("collector", writer), ("grafana", reader)):
        sql = re.sub(rf"\b{word}\b", name, sql)
    psql = need_program("psql", "postgresql")
    admin = make_url(PG_URL)

    def url(role: str) -> str:
        return admin.set(username=role, database=db).render_as_string(hide_password=False)

    try:
        done = subprocess.run([psql, PG_URL, "-q", "-v", "ON_ERROR_STOP=1"], input=sql,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

        async def as_the_collector() -> None:
            led = Ledger(url(writer))
            await led.open()  # migrates: creates every table
            try:
                await led.sync_config([MachineInfo("press07")], [SeriesInfo("press07", "current")])
                await led.write([Reading("press07", "current", T0 + i, 1.5 * i) for i in range(100)])
            finally:
                await led.close()

        asyncio.run(as_the_collector())
        cfg = tmp_path / "central.yaml"
        cfg.write_text(f"ledger:\n  url: {url(writer)}\nmachines: []\n")
        down = collector("db", "downgrade", "-c", cfg, "--to", "0005")
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip() == f"ledger schema at revision 0005 (was {head()})"
        up = collector("db", "upgrade", "-c", cfg)
        assert up.returncode == 0 and up.stdout.strip() == f"ledger schema at revision {head()}"

        async def as_grafana() -> None:
            conn = await asyncpg.connect(url(reader))
            try:
                assert await conn.fetchval("SELECT count(*) FROM readings_all") == 100
                assert await conn.fetchval("SELECT count(*) FROM production_1h") == 0
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("INSERT INTO machines (id) VALUES ('x')")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("CREATE TABLE mine (x int)")
                assert await conn.fetchval("SHOW statement_timeout") == "30s"
            finally:
                await conn.close()
            conn = await asyncpg.connect(url(writer))
            try:
                rights = await conn.fetchrow(
                    "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                    "WHERE rolname = current_user")
                assert tuple(rights) == (False, False, False)
            finally:
                await conn.close()

        asyncio.run(as_grafana())
    finally:
        subprocess.run([psql, PG_URL, "-q", "-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
                       capture_output=True, timeout=60)
        for role in (reader, writer):
            subprocess.run([psql, PG_URL, "-q", "-c", f"DROP ROLE IF EXISTS {role}"],
                           capture_output=True, timeout=60)


def test_rollback_by_downgrade_or_by_restoring_the_backup(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"ledger:\n  url: sqlite:///{ledger}\nspool:\n  path: {tmp_path}/spool.db\n"
                   "machines: []\n")

    async def fill() -> None:
        led = Ledger(f"sqlite:///{ledger}")
        await led.open()
        await led.sync_config([MachineInfo("press07")], [SeriesInfo("press07", "parts")])
        await led.write([Reading("press07", "parts", T0 + i, 2**63 + i) for i in range(50)])
        await led.close()
        from collector.spool import Spool  # the spool file the backup copies beside the ledger

        spool = Spool(tmp_path / "spool.db", max_size=10**8)
        await spool.open()
        await spool.close()

    asyncio.run(fill())
    backup = collector("db", "backup", "-c", cfg, "--to", tmp_path / "before-upgrade.db", "--spool")
    assert backup.returncode == 0, backup.stderr
    revision = collector("db", "revision", "-c", cfg)
    assert revision.stdout.strip() == (f"ledger schema at revision {head()}; this collector's "
                                       f"newest is {head()}")

    down = collector("db", "downgrade", "-c", cfg, "--to", "0005")
    assert down.returncode == 0 and "revision 0005 (was" in down.stdout, down.stderr
    conn = sqlite3.connect(ledger)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "production_1h" not in tables
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 50
    conn.close()

    wrong = collector("db", "downgrade", "-c", cfg, "--to", "0009")
    assert wrong.returncode == 1 and "give one of 0001" in wrong.stderr
    forward = collector("db", "downgrade", "-c", cfg, "--to", head())
    assert forward.returncode == 1 and "`collector db upgrade` moves forward" in forward.stderr

    shutil.copyfile(tmp_path / "before-upgrade.db", ledger)  # the restore
    for stale in (f"{ledger}-wal", f"{ledger}-shm"):
        Path(stale).unlink(missing_ok=True)
    restored = collector("db", "revision", "-c", cfg)
    assert f"revision {head()};" in restored.stdout
    conn = sqlite3.connect(ledger)
    assert conn.execute("SELECT count(*), count(value_int) FROM readings_all").fetchone() == (50, 50)
    conn.close()
