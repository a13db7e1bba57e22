"""Shared fixtures: ledgers on SQLite and on the machine's PostgreSQL, free ports, and a
throw-away PostgreSQL cluster that tests may stop and start."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import registry

registry()  # every adapter's source model, for the configs the tests parse

PG_URL = os.environ.get("COLLECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago, for a peer the test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_program(name: str, package: str) -> str:
    """The path of the program `name`; without it the test fails, naming the Debian package to
    install (README.md lists them under "Tests"; `.ci/run` installs them)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package}", pytrace=False)
    return path


async def wait_for(condition: Callable[[], Any], within: float = 15.0, step: float = 0.02) -> None:
    """Poll until `condition()` is true; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(step)


def _psql(sql: str, url: str = PG_URL) -> None:
    subprocess.run([need_program("psql", "postgresql"), url, "-q", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, capture_output=True)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema in the shared `test` database, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE SCHEMA {name}")
    yield name
    _psql(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) for each backend: the same test code runs on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db", None
    else:
        name = f"t_{uuid.uuid4().hex[:12]}"
        _psql(f"CREATE SCHEMA {name}")
        yield PG_URL, name
        _psql(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
async def ledger(ledger_target: tuple[str, str | None]) -> AsyncIterator[object]:
    from collector.ledger import Ledger

    url, schema = ledger_target
    led = Ledger(url, schema=schema)
    await led.open()
    yield led
    await led.close()


class ThrowawayPostgres:
    """A private PostgreSQL cluster on a free port, run as the postgres user (initdb refuses
    root); stopped and started by the test to simulate an outage."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, timeout=120)

    def init(self) -> None:
        self.sock.mkdir(parents=True)
        shutil.chown(self.root, "postgres")
        shutil.chown(self.sock, "postgres")
        self._run(need_program(str(PG_BIN / "initdb"), "postgresql"), "-D", str(self.data),
                  "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off", "-w", "start")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def throwaway_pg() -> Iterator[ThrowawayPostgres]:
    root = Path(tempfile.mkdtemp(prefix="collector-pg-"))
    pg = ThrowawayPostgres(root)
    pg.init()
    pg.start()
    try:
        yield pg
    finally:
        if pg.running():
            try:
                pg.stop()
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(root, ignore_errors=True)
