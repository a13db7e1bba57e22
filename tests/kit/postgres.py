"""PostgreSQL peers: a schema of its own in the machine's shared server, and a throw-away
cluster on a free port that a test may stop and start for an outage."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .ports import free_port
from .programs import need_program

PG_URL = os.environ.get("COLLECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def psql(sql: str, url: str = PG_URL) -> None:
    """Run `sql` with psql; fail on the first error."""
    subprocess.run([need_program("psql", "postgresql"), url, "-q", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, capture_output=True)


@contextmanager
def fresh_schema(url: str = PG_URL) -> Iterator[str]:
    """A schema no other run uses, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE SCHEMA {name}", url)
    try:
        yield name
    finally:
        psql(f"DROP SCHEMA IF EXISTS {name} CASCADE", url)


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


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A started throw-away cluster, stopped and removed afterwards (also when the test fails)."""
    root = Path(tempfile.mkdtemp(prefix="collector-pg-"))
    pg = ThrowawayPostgres(root)
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        if pg.running():
            try:
                pg.stop()
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(root, ignore_errors=True)
