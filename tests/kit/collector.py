"""`collector run` as a process of its own, as a box runs it: started, SIGKILLed, restarted
and stopped by its PID, its health and metrics read over HTTP, and its resources (memory,
open files, sockets, threads) read from /proc."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .ports import free_port

ROOT = Path(__file__).resolve().parents[2]


class CollectorProcess:
    """One `collector run -c FILE`; `start()` again after `kill()` continues with the same
    config, log and API port."""

    def __init__(self, config: Path, log: Path, *, api_port: int | None = None,
                 env: Mapping[str, str] | None = None):
        self.config = config
        self.log = log
        self.api_port = api_port or free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the collector is not running"
        return self.proc.pid

    def start(self, wait: bool = True, within: float = 60.0) -> CollectorProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector.cli", "run", "-c", str(self.config)],
                stdout=out, stderr=out, env=self.env, cwd=ROOT)
        self.starts += 1
        if wait:
            self.wait_up(within)
        return self

    def wait_up(self, within: float = 60.0) -> None:
        """Until /api/v1/health answers (the API is served once the runtime has started)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, \
                f"collector exited: {self.log_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"collector did not come up within {within} s")

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after `within` s); the exit code, None if not running."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(within)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/health", timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def figures(self) -> ProcessFigures:
        return process_figures(self.pid)

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True)
class ProcessFigures:
    """What /proc says about a process now."""

    rss_kb: int
    fds: int
    sockets: int
    threads: int


def process_figures(pid: int) -> ProcessFigures:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    fds = sockets = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        fds += 1
        sockets += target.startswith("socket:")
    return ProcessFigures(rss, fds, sockets, threads)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc/PID/net/tcp*."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            out.add((_address(address), int(port, 16)))
    return out


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)]
    text = "".join(words)
    return ":".join(text[i:i + 4] for i in range(0, 32, 4))


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text (`name{labels}`), None when absent."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        if sample != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def ledger_rows(db: Path, machine: str, tag: str) -> list[tuple[int, Any, int]]:
    """(ts, value, quality) of one tag in a SQLite ledger, oldest first."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(
            "SELECT r.ts, coalesce(r.value, r.text), r.quality FROM readings_all r "
            "JOIN series s ON s.id = r.series_id WHERE s.machine_id = ? AND s.tag = ? "
            "ORDER BY r.ts", (machine, tag)).fetchall()
    finally:
        conn.close()


def spool_batches(path: Path) -> int:
    """Batches waiting in a spool file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM batches").fetchone()[0])
    finally:
        conn.close()
