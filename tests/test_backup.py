"""`collector db backup`: a copy of the SQLite ledger (and the spool) taken while a real
`collector run` writes the readings of a pymodbus device; the copy opens, passes
`PRAGMA integrity_check` and holds every reading committed before the backup began."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from collector.ledger import Ledger, SeriesInfo
from collector.model import Reading
from tests.kit.modbus import Device, sim_device
from tests.kit.postgres import PG_URL

SEEDED = 200_000  # readings already in the ledger, so that each copy takes a while


def config(tmp_path: Path, port: int) -> str:
    return f"""
box: backup-box
ledger:
  url: sqlite:///{tmp_path}/data/ledger.db
spool:
  path: {tmp_path}/data/spool.db
pipeline:
  flush_interval: 50ms
api:
  enabled: false
machines:
  - id: press07
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: {port}
        interval: 20ms
        timeout: 2s                   # a busy test machine is not a dead device
        tags:
          - {{name: current, register: holding, address: 0, type: uint16}}
          - {{name: strokes, register: holding, address: 1, type: uint16}}
"""


def collector(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def keys(path: Path) -> set[tuple[int, int]]:
    """(series_id, ts) of every committed reading, as a reader of the file sees them now."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return set(conn.execute("SELECT series_id, ts FROM readings_all"))
    finally:
        conn.close()


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "-c", str(cfg)],
                                stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def check_copy(copy: Path, spool: Path, before: set[tuple[int, int]]) -> int:
    """The copies open and pass integrity_check; the ledger's holds all of `before`."""
    assert integrity(copy) == "ok"
    assert integrity(spool) == "ok"
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    copied = keys(copy)
    assert before <= copied, f"{len(before - copied)} committed readings missing"
    return len(copied)


def integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


async def seed(path: Path) -> None:
    ledger = Ledger(f"sqlite:///{path}")
    try:
        await ledger.open()
        await ledger.sync_config([], [SeriesInfo("history", "current")])
        for start in range(0, SEEDED, 20_000):
            await ledger.write([Reading("history", "current", 1_700_000_000_000_000 + i * 1_000_000,
                                        float(i)) for i in range(start, start + 20_000)])
    finally:
        await ledger.close()


async def test_backup_while_collector_run_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ledger = data / "ledger.db"
    await seed(ledger)
    backups = tmp_path / "backups"
    backups.mkdir()
    async with Device([sim_device(1)]) as device:
        cfg = tmp_path / "collector.yaml"
        cfg.write_text(config(tmp_path, device.port))
        proc = start(cfg, tmp_path / "collector.log")
        try:
            loop = asyncio.get_running_loop()
            live = 0
            for round_ in range(3):
                deadline = loop.time() + 30
                while len(before := keys(ledger)) < SEEDED + live + 50:  # the collector writes
                    assert proc.poll() is None, (tmp_path / "collector.log").read_text()
                    assert loop.time() < deadline, "the collector wrote nothing"
                    await device.set("holding", 0, [round_ * 100 + len(before) % 100])
                    await asyncio.sleep(0.1)
                copy = backups / f"ledger-{round_}.db"
                done = await asyncio.to_thread(
                    collector, "db", "backup", "-c", str(cfg), "--to", str(copy), "--spool")
                assert done.returncode == 0, done.stderr
                assert done.stdout.splitlines() == [
                    f"{ledger} -> {copy} ({copy.stat().st_size} bytes)",
                    f"{data / 'spool.db'} -> {backups / f'ledger-{round_}-spool.db'} "
                    f"({(backups / f'ledger-{round_}-spool.db').stat().st_size} bytes)"]
                live = check_copy(copy, backups / f"ledger-{round_}-spool.db", before) - SEEDED
            assert proc.poll() is None, (tmp_path / "collector.log").read_text()
            assert len(keys(ledger)) > SEEDED + live  # it kept writing after the last copy
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.to_thread(proc.wait, 30)
    written = (tmp_path / "collector.log").read_text()
    assert proc.returncode == 0, written
    assert not [line for line in written.splitlines() if " WARNING " in line or " ERROR " in line]
    # restore: the collector stopped, the copy put back; it starts on it and carries on
    last = keys(backups / "ledger-2.db")
    stopped = collector("db", "backup", "-c", str(cfg), "--to", str(backups))  # a folder
    assert stopped.returncode == 0, stopped.stderr
    assert keys(backups / "ledger.db") == keys(ledger)
    os.replace(backups / "ledger-2.db", ledger)
    assert keys(ledger) == last
    assert collector("db", "upgrade", "-c", str(cfg)).returncode == 0


def test_backup_refuses_a_postgresql_ledger(tmp_path: Path) -> None:
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"ledger:\n  url: {PG_URL}\n  schema: plant1\nmachines: [{{id: press07}}]\n")
    done = collector("db", "backup", "-c", str(cfg), "--to", str(tmp_path / "copy.db"))
    assert done.returncode == 1
    assert done.stderr == (
        "collector: the ledger is on PostgreSQL (127.0.0.1/test): back it up with pg_dump "
        "(pg_dump -Fc -n plant1 -f ledger.dump postgresql://...)\n")
    assert not (tmp_path / "copy.db").exists()


def test_backup_says_what_to_change(tmp_path: Path) -> None:
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"ledger:\n  url: sqlite:///{tmp_path}/none.db\nmachines: [{{id: press07}}]\n")
    done = collector("db", "backup", "-c", str(cfg), "--to", str(tmp_path / "copy.db"))
    assert (done.returncode, done.stderr) == (1, (
        f"collector: {str(tmp_path / 'none.db')!r} does not exist: check ledger.url in the "
        "config\n"))
    (tmp_path / "none.db").touch()
    done = collector("db", "backup", "-c", str(cfg), "--to", str(tmp_path / "copy.db"), "--spool")
    assert (done.returncode, done.stderr) == (1, (
        f"collector: {str(tmp_path / 'collector-spool.db')!r} does not exist: check spool.path "
        "in the config\n"))
    assert not (tmp_path / "copy.db").exists()
    for to in (tmp_path / "no" / "copy.db", f"{tmp_path / 'no'}/"):
        done = collector("db", "backup", "-c", str(cfg), "--to", str(to))
        assert (done.returncode, done.stderr) == (1, (
            f"collector: folder {str(tmp_path / 'no')!r} does not exist: create it or choose "
            "another --to\n"))
