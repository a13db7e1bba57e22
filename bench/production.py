"""Production ledger: the live derivation's CPU, the daily ledger and OEE over 30 days of stored
production data, and a rebuild of 30 days of one machine from its stored readings.

    .venv/bin/python bench/production.py [--backend sqlite|postgresql|both] [--machines 100]
                                         [--days 30] [--quick] [--only derive,daily,rebuild]
                                         [--derive-seconds 600] [--runs 30] [--profile]

1. derive: `--machines` machines, each with three state tags (a current clamp, a stack light,
   a mode switch) and a 32-bit part counter, read at 1 Hz. Every second's readings are written
   with `ledger.write`, then handed to `Derivation.committed`, and `Derivation.cycle` runs,
   as the pipeline and the derivation's task do, on a simulated clock (as fast as the machine
   goes, not in real time). The figure is the CPU time of committed() + cycle() (their commit
   of intervals, counts and checkpoints included; on PostgreSQL the server's share is not in
   it) per second of data, as % of one core; the ledger writes are timed apart. Machines
   change state every few minutes (running, idle, short stops, now and then a downtime of
   5-30 min or a source going silent) and make a part every 4-6 s while running. The parts
   derived are checked against the parts simulated.
2. daily: `--days` days of stored production data for `--machines` machines, written through
   `ProductionStore.commit` (state intervals, a count event per part, energy per minute,
   downtime reasons, checkpoints) with the same densities; then `ProductionReport.daily`
   and `ProductionReport.oee` (a 30-day window) in this process, and
   `GET /api/v1/ledger/daily` and `GET /api/v1/machines/{id}/oee` from a server in its own
   process as `collector run` serves it (uvicorn on the collector's event loop, start-up
   objects frozen out of the GC), one client at a time, `--runs` requests each.
3. rebuild: `--days` days of one machine's four tags at 1 Hz written with `ledger.write` in
   batches of 20,000, then `Derivation.rederive(machine, start, end, splice=True)`, what
   `collector rebuild` runs.

SQLite files go to a temporary directory; on PostgreSQL (127.0.0.1:5432, database `test`, or
$COLLECTOR_BENCH_PG) each part uses a schema of its own, dropped at the end. With --profile
the measured calls also run under cProfile (the timings then include its overhead) and the
functions taking the most time are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import math
import os
import platform
import pstats
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.base import registry  # noqa: E402
from bench.common import code_version, speed_reference  # noqa: E402
from collector.config import CollectorConfig, MachineConfig, PipelineConfig, parse_config  # noqa: E402
from collector.derive.engine import Derivation  # noqa: E402
from collector.derive.machine import OFFLINE, MachineDerivation  # noqa: E402
from collector.derive.report import ProductionReport  # noqa: E402
from collector.derive.rules import compile_rules  # noqa: E402
from collector.ledger import Ledger, MachineInfo, SeriesInfo  # noqa: E402
from collector.ledger.production import MINUTE, ProductionBatch  # noqa: E402
from collector.model import BAD, Reading, us_from_datetime  # noqa: E402

PG = os.environ.get("COLLECTOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
S = 1_000_000
DAY = 86_400 * S
TZ = "Asia/Shanghai"
IDEAL_CYCLE = 4.0  # s per part at the rated speed; parts come every 4-5.6 s while running
WRAP = 1 << 32
TAGS = ("current", "light_green", "mode", "parts")
REASONS = (("tool_change", True), ("cleaning", True), ("no_material", False),
           ("breakdown", False), ("no_operator", False))
TARGETS = {"derive": 0.5, "daily": 200.0, "oee": 100.0, "rebuild": 60.0}
NOTE = ("INSERT INTO downtime_notes (machine_id, start_ts, reason, comment, updated_at) "
        "VALUES (:m, :s, :reason, :comment, :at)")


# --- the plant ---------------------------------------------------------------------------------
def machine_id(i: int) -> str:
    return f"m{i:03d}"


def config_text(machines: int, url: str = "sqlite:///unused.db",
                api: str = "{enabled: false, workers: 0}") -> str:
    """A plant of `machines` machines, each a Modbus I/O module with a current clamp, the
    green lamp of its stack light, a mode key switch and a part counter, in three shifts."""
    lines = [
        f"ledger: {{url: '{url}'}}",
        f"api: {api}",
        "plant:",
        f"  timezone: {TZ}",
        "  shifts:",
        "    - {name: early, start: '06:00', end: '14:00'}",
        "    - {name: late, start: '14:00', end: '22:00'}",
        "    - {name: night, start: '22:00', end: '06:00'}",
        "  breaks:",
        "    - {start: '10:00', end: '10:15'}",
        "    - {start: '18:00', end: '18:30'}",
        "    - {start: '02:00', end: '02:30'}",
        "  downtime_reasons:",
        *(f"    - {{code: {code}, planned: {str(planned).lower()}}}" for code, planned in REASONS),
        "machines:",
    ]
    for i in range(machines):
        lines += [
            f"  - id: {machine_id(i)}",
            f"    line: line{i // 10}",
            "    sources:",
            f"      - {{id: io, protocol: modbus, host: 127.0.0.1, port: {20000 + i}, interval: 1s,",
            "         tags: [{name: current, register: input, address: 0, type: float32, unit: A},",
            "                {name: light_green, register: discrete, address: 0},",
            "                {name: mode, register: holding, address: 10, type: uint16},",
            "                {name: parts, register: holding, address: 20, type: uint32}]}",
            "    production:",
            "      states:",
            "        - {state: running, when: 'mode == 2 and current > 9'}",
            "        - {state: idle, when: 'current > 2 or light_green'}",
            "        - {state: stopped, when: 'true'}",
            "      min_duration: 2s",
            "      counters: {total: parts}",
            f"      ideal_cycle: {IDEAL_CYCLE}s",
            "      micro_stop: 2m",
        ]
    return "\n".join(lines) + "\n"


def make_config(machines: int, url: str = "sqlite:///unused.db",
                api: str = "{enabled: false, workers: 0}") -> CollectorConfig:
    registry()  # the adapters' config models, before a config is parsed
    return parse_config(config_text(machines, url, api))


async def sync(ledger: Ledger, config: CollectorConfig) -> None:
    await ledger.sync_config([MachineInfo(m.id, m.display_name) for m in config.machines],
                             [SeriesInfo(m.id, t, None, "io", "modbus")
                              for m in config.machines for t in TAGS])


# --- how a machine behaves -----------------------------------------------------------------------
def next_phase(rng: random.Random, state: str) -> tuple[str, float]:
    """The next state and how long it lasts (s): runs of ~5 min, then an idle spell, a short
    stop (a micro-stop, under 2 min), now and then a downtime of 5-30 min or a silent source."""
    if state != "running":
        return "running", min(3600.0, 30.0 + rng.expovariate(1 / 270))
    r = rng.random()
    if r < 0.45:
        return "idle", 10.0 + rng.expovariate(1 / 80)
    if r < 0.85:
        return "stopped", rng.uniform(20, 110)
    if r < 0.97:
        return "stopped", rng.uniform(300, 1800)
    return OFFLINE, rng.uniform(120, 1200)


class MachineSim:
    """One machine read at 1 Hz: what its four tags say each second."""

    def __init__(self, name: str, rng: random.Random, t0: int, parts: int):
        self.name = name
        self.rng = rng
        self.state, seconds = next_phase(rng, rng.choice(("idle", "running")))
        self.until = t0 + int(rng.uniform(0, seconds) * S)
        self.parts = parts  # the counter (unwrapped)
        self.next_part = t0 + int(IDEAL_CYCLE * S)
        self.first: int | None = None  # the counter at the first reading sent

    @property
    def made(self) -> int:
        """Parts shown by the readings sent (the first one is where counting starts)."""
        return self.parts - self.first if self.first is not None else 0

    def readings(self, ts: int) -> list[Reading]:
        rng = self.rng
        while ts >= self.until:
            self.state, seconds = next_phase(rng, self.state)
            self.until += int(seconds * S)
            if self.state == "running":
                self.next_part = self.until - int(seconds * S) + int(rng.uniform(1, 5) * S)
        state = self.state
        if state == OFFLINE:
            return []
        if state == "running":
            while ts >= self.next_part:
                self.parts += 1
                self.next_part += int(IDEAL_CYCLE * rng.uniform(1.0, 1.4) * S)
            current, green, mode = 12.0 + rng.gauss(0, 0.8), True, 2
        elif state == "idle":
            current, green, mode = 4.0 + rng.gauss(0, 0.3), True, 2
        else:
            current, green, mode = max(0.0, 0.2 + rng.gauss(0, 0.05)), False, rng.choice((0, 2))
        if self.first is None:
            self.first = self.parts
        m = self.name
        return [Reading(m, "current", ts, round(current, 3)), Reading(m, "light_green", ts, green),
                Reading(m, "mode", ts, mode), Reading(m, "parts", ts, self.parts % WRAP)]


def local_midnight(days_ago: int = 0) -> int:
    """The start of the plant's local date `days_ago` days before today, in µs."""
    tz = ZoneInfo(TZ)
    today = datetime.now(tz).date() - timedelta(days=days_ago)
    return us_from_datetime(datetime(today.year, today.month, today.day, tzinfo=tz).astimezone(UTC))


# --- backends ------------------------------------------------------------------------------------
def psql(sql: str) -> None:
    subprocess.run(["psql", PG, "-q", "-c", sql], check=True, capture_output=True)


@contextlib.contextmanager
def database(backend: str, tmp: Path, name: str,
             keep: str | None = None) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of an empty ledger, removed afterwards; with `keep` a ledger kept under
    that name (in --keep-data's directory, or a schema of that name) for the next run."""
    if keep is not None:
        if backend == "sqlite":
            yield f"sqlite:///{keep}.db", None
        else:
            psql(f"CREATE SCHEMA IF NOT EXISTS {Path(keep).name}")
            yield PG, Path(keep).name
        return
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/{name}.db", None
        return
    schema = f"bench_prod_{name}_{uuid.uuid4().hex[:6]}"
    psql(f"CREATE SCHEMA {schema}")
    try:
        yield PG, schema
    finally:
        psql(f"DROP SCHEMA {schema} CASCADE")


class Profile:
    """cProfile around the measured calls only, when asked for."""

    def __init__(self, enabled: bool):
        self.profiler = cProfile.Profile() if enabled else None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.profiler is None:
            yield
            return
        self.profiler.enable()
        try:
            yield
        finally:
            self.profiler.disable()

    def report(self, title: str, lines: int = 25) -> None:
        if self.profiler is None:
            return
        out = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=out)
        stats.sort_stats("tottime").print_stats(lines)
        stats.sort_stats("cumulative").print_stats(lines)
        print(f"\n# profile: {title}\n{out.getvalue()}", flush=True)


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return math.nan


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


# --- 1. the live derivation ----------------------------------------------------------------------
async def bench_derive(url: str, schema: str | None, args: argparse.Namespace) -> dict[str, Any]:
    config = make_config(args.machines)
    ledger = Ledger(url, schema=schema)
    await ledger.open()
    try:
        await sync(ledger, config)
        rng = random.Random(1)
        t0 = local_midnight(1) + 8 * 3600 * S  # 08:00 yesterday, local
        sims = [MachineSim(machine_id(i), rng, t0, WRAP - 40 if i == 0 else rng.randrange(10**6))
                for i in range(args.machines)]
        # each machine's module is scanned at its own phase within the second
        phases = [rng.randrange(S) for _ in sims]
        rules = [r for r in map(compile_rules, config.machines) if r is not None]
        clock = [t0]
        derivation = Derivation(rules, ledger, clock=lambda: clock[0])
        await derivation.resume()
        profile = Profile(args.profile)
        warmup = max(10, args.derive_seconds // 10)
        derive_cpu = write_cpu = 0.0
        derive_wall = 0.0
        slowest = 0.0
        readings = 0
        gc.collect()
        gc.freeze()  # as `collector run` does after start-up
        for second in range(warmup + args.derive_seconds):
            base = t0 + second * S
            batch = [r for sim, phase in zip(sims, phases, strict=True)
                     for r in sim.readings(base + phase)]
            c = time.process_time()
            await ledger.write(batch)
            w = time.process_time()
            clock[0] = base + S  # the pipeline commits a scan within its flush interval
            p = time.perf_counter()
            with profile():
                derivation.committed(batch)
                await derivation.cycle()
            took = time.process_time() - w
            if second >= warmup:
                write_cpu += w - c
                derive_cpu += took
                derive_wall += time.perf_counter() - p
                slowest = max(slowest, took)
                readings += len(batch)
        clock[0] += 10 * S
        await derivation.cycle(final=True)
        gc.unfreeze()
        rows = await ledger.production.fetch(
            "SELECT coalesce(sum(total), 0), count(*) FROM part_counts", {}, 1)
        derived = int(rows[0][0])
        made = sum(sim.made for sim in sims)
        intervals = (await ledger.production.fetch("SELECT count(*) FROM state_intervals", {}, 1))[0][0]
        profile.report("derivation: committed() + cycle()")
        return {
            "seconds": args.derive_seconds, "readings": readings,
            "cpu_pct": 100 * derive_cpu / args.derive_seconds,
            "per_reading_us": 1e6 * derive_cpu / readings,
            "slowest_ms": 1000 * slowest, "wall_pct": 100 * derive_wall / args.derive_seconds,
            "write_pct": 100 * write_cpu / args.derive_seconds,
            "parts_made": made, "parts_derived": derived, "intervals": int(intervals),
            "stats": dict(derivation.stats),
            "wraps": derivation.stats.get("counter_wrap", 0),
        }
    finally:
        await ledger.close()


# --- 2. the daily ledger on stored production data -----------------------------------------------
def machine_history(rng: random.Random, name: str, start: int, end: int
                    ) -> Iterator[tuple[str, int, int]]:
    """(state, from, to) of one machine from `start` to `end`, whole seconds, neighbours
    different."""
    state, seconds = next_phase(rng, rng.choice(("idle", "running")))
    at = start
    length = int(rng.uniform(1, seconds)) * S
    while at < end:
        stop = min(end, at + max(S, length))
        yield state, at, stop
        at = stop
        state, seconds = next_phase(rng, state)
        length = int(seconds) * S


async def build_history(ledger: Ledger, config: CollectorConfig, start: int, end: int,
                        concurrent: int = 3) -> dict[str, Any]:
    """Stored production data as derivation would have left it, written through
    `ProductionStore.commit` a machine-day at a time (a few machines at once, so that
    PostgreSQL works while the next batch is made)."""
    store = ledger.production
    totals: dict[str, Any] = {"counts": 0, "intervals": 0, "notes": 0}
    gate = asyncio.Semaphore(concurrent)

    async def machine(i: int, m: MachineConfig) -> None:
        rules = compile_rules(m)
        assert rules is not None
        rng = random.Random(1000 + i)
        batch = ProductionBatch()
        notes: list[dict[str, Any]] = []
        day_end = start + DAY
        counter = rng.randrange(10**6)
        last: tuple[str, int, int] | None = None
        for state, a, b in machine_history(rng, m.id, start, end):
            if last is not None:
                batch.intervals.append((m.id, last[1], last[2], last[0]))
            last = (state, a, b)
            if state == "running":
                t = a + int(rng.uniform(1, 5) * S)
                while t < b:
                    batch.counts.append((m.id, t, 1, 0, 0))
                    counter += 1
                    t += int(IDEAL_CYCLE * rng.uniform(1.0, 1.4) * S)
            elif state == "stopped" and b - a >= 120 * S and rng.random() < 0.3:
                notes.append({"m": m.id, "s": a, "reason": rng.choice(REASONS)[0],
                              "comment": None, "at": b})
            if b >= day_end or b >= end:
                minute = day_end - DAY
                while minute < min(day_end, end):  # the meter's kWh of each minute
                    batch.energy.append((m.id, minute + 30 * S, 0.25 if rng.random() < 0.6 else 0.05))
                    minute += MINUTE
                day_end += DAY
                totals["counts"] += len(batch.counts)
                totals["intervals"] += len(batch.intervals)
                async with gate:
                    await store.commit(batch)
                batch = ProductionBatch()
        assert last is not None
        # the open state and the counter, as derivation leaves them in its checkpoint
        md = MachineDerivation(rules)
        md.state, md.since, md.upto, md.last_good, md.begin = last[0], last[1], end, end, start
        md.values = {"current": 12.0, "light_green": True, "mode": 2.0}
        md.trackers["total"].ref = counter % WRAP
        batch.checkpoints.append((m.id, end, md.state, md.since, md.checkpoint()))
        async with gate:
            await store.commit(batch)
            if notes:  # reasons a supervisor gave to about a third of the downtimes
                await store.commit_statements([(NOTE, notes)])
        totals["notes"] += len(notes)

    await asyncio.gather(*(machine(i, m) for i, m in enumerate(config.machines)))
    return totals


def ledger_rows(found: Any) -> list[dict[str, Any]]:
    """The per-shift rows of `ProductionReport.daily` (rows, or rows and the day's totals)."""
    return found[0] if isinstance(found, tuple) else found


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94]


async def bench_report(url: str, schema: str | None, config: CollectorConfig, start: int,
                       end: int, days: list[date], args: argparse.Namespace) -> dict[str, Any]:
    ledger = Ledger(url, schema=schema)
    await ledger.open()
    try:
        report = ProductionReport(config, ledger.production)
        profile = Profile(args.profile)
        out: dict[str, Any] = {}
        gc.collect()
        gc.freeze()
        cold = time.perf_counter()
        rows = ledger_rows(await report.daily(days[0]))
        out["daily_cold_ms"] = (time.perf_counter() - cold) * 1000
        out["daily_rows"] = len(rows)
        out["daily_parts"] = sum(r["total"] for r in rows)
        times = []
        cpu = []
        for i in range(args.runs):
            day = days[(i + 1) % len(days)]
            t, c = time.perf_counter(), time.process_time()
            with profile():
                rows = ledger_rows(await report.daily(day))
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            assert len(rows) == 3 * len(config.machines), len(rows)
        out["daily"] = quantiles(times)
        out["daily_cpu"] = statistics.median(cpu)
        profile.report("ProductionReport.daily")
        profile = Profile(args.profile)
        rng = random.Random(3)
        times, cpu = [], []
        window = min(30, args.days) * DAY
        for _ in range(args.runs):
            m = machine_id(rng.randrange(len(config.machines)))
            t, c = time.perf_counter(), time.process_time()
            with profile():
                found = await report.oee(m, end - window, end)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            assert found["total"] > 0, found
        out["oee"] = quantiles(times)
        out["oee_cpu"] = statistics.median(cpu)
        profile.report("ProductionReport.oee, 30 days")
        gc.unfreeze()
        return out
    finally:
        await ledger.close()


# the server process, as in `collector run` ------------------------------------------------------
def serve(args: argparse.Namespace) -> None:
    from api.server import ApiServer
    from collector.model import SECONDS_BUCKETS, BucketCounts
    from collector.runtime import run_service

    class Stats:
        write_seconds = BucketCounts(SECONDS_BUCKETS)

        def stats(self) -> dict[str, object]:
            return {"ok": True, "backlog": 0, "queued": 0, "dropped": 0, "written": 0,
                    "last_error": None}

    class Runtime:
        """What the API reads of `collector run`'s runtime: its config and ledger (no sources
        run here: the ledger holds what they would have made)."""

        def __init__(self, ledger: Ledger):
            self.ledger, self.pipeline, self.health = ledger, Stats(), []
            self.derivation = None  # figures are read from what the ledger holds
            self.config = make_config(args.machines, api=f"{{host: 127.0.0.1, port: {args.port}, "
                                      "workers: 0}")

    async def main() -> None:
        ledger = Ledger(args.url, schema=args.schema)
        await ledger.open()
        server = ApiServer(Runtime(ledger))
        await server.start()
        gc.collect()
        gc.freeze()  # as `collector run` does after start-up
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()
        await ledger.close()

    run_service(main())


class Http:
    """A minimal HTTP/1.1 keep-alive client (as in bench/api.py)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, url: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(head[9:12]), await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def bench_http(url: str, schema: str | None, config: CollectorConfig, end: int,
                     days: list[date], args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from tests.kit.ports import free_port

    port = free_port()
    cmd = [sys.executable, __file__, "--machines", str(args.machines), "serve", "--url", url,
           "--port", str(port)] + (["--schema", schema] if schema else [])
    proc = subprocess.Popen(cmd)  # noqa: ASYNC220 (started once, before anything is timed)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                async with httpx.AsyncClient() as client:
                    await client.get(f"http://127.0.0.1:{port}/api/v1/health")
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the API server did not start") from None
                await asyncio.sleep(0.2)
        http = Http(port)
        out: dict[str, Any] = {}
        try:
            status, body = await http.get(f"/api/v1/ledger/daily?date={days[0].isoformat()}")
            assert status == 200, (status, body[:300])
            times = []
            for i in range(args.runs):
                day = days[(i + 1) % len(days)]
                t = time.perf_counter()
                status, body = await http.get(f"/api/v1/ledger/daily?date={day.isoformat()}")
                times.append((time.perf_counter() - t) * 1000)
                assert status == 200, (status, body[:300])
            out["http_daily"] = quantiles(times)
            out["http_daily_bytes"] = len(body)
            times = []
            rng = random.Random(4)
            window = min(30, args.days) * DAY
            for _ in range(args.runs):
                m = machine_id(rng.randrange(len(config.machines)))
                t = time.perf_counter()
                status, body = await http.get(
                    f"/api/v1/machines/{m}/oee?start={(end - window) // 1000}&end={end // 1000}")
                times.append((time.perf_counter() - t) * 1000)
                assert status == 200, (status, body[:300])
            out["http_oee"] = quantiles(times)
        finally:
            await http.close()
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def build_daily(url: str, schema: str | None, args: argparse.Namespace,
                      start: int, end: int) -> dict[str, Any]:
    config = make_config(args.machines)
    ledger = Ledger(url, schema=schema)
    await ledger.open()
    try:
        await sync(ledger, config)
        t = time.perf_counter()
        built = await build_history(ledger, config, start, end)
        built["seconds"] = time.perf_counter() - t
        if schema is not None:  # what autovacuum does to tables filled this fast
            async with ledger.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("state_intervals", "part_counts", "production_1m",
                              "production_checkpoints", "downtime_notes"):
                    await conn.execute(text(f"VACUUM ANALYZE {table}"))
        return built
    finally:
        await ledger.close()


async def stored_days(url: str, schema: str | None) -> bool:
    """Whether a kept ledger holds the daily part's data already."""
    ledger = Ledger(url, schema=schema)
    await ledger.open()
    try:
        rows = await ledger.production.fetch("SELECT count(*) FROM production_checkpoints", {}, 1)
        return bool(rows and rows[0][0])
    finally:
        await ledger.close()


# --- 3. rebuild ----------------------------------------------------------------------------------
async def bench_rebuild(url: str, schema: str | None, args: argparse.Namespace) -> dict[str, Any]:
    config = make_config(1)
    name = config.machines[0].id
    ledger = Ledger(url, schema=schema)
    await ledger.open()
    try:
        await sync(ledger, config)
        end = local_midnight(0)
        start = end - args.days * DAY
        rng = random.Random(5)
        sim = MachineSim(name, rng, start, WRAP - 1000)
        batch_size = PipelineConfig().batch_size
        t = time.perf_counter()
        batch: list[Reading] = []
        written = 0
        silent = 0
        for second in range(args.days * 86_400):
            found = sim.readings(start + second * S)
            if not found:
                if silent == 0:  # the source's bad readings when it went silent
                    batch += [Reading(name, tag, start + second * S, None, BAD) for tag in TAGS]
                silent += 1
            else:
                silent = 0
                batch += found
            if len(batch) >= batch_size:
                await ledger.write(batch)
                written += len(batch)
                batch = []
        if batch:
            await ledger.write(batch)
            written += len(batch)
        write_s = time.perf_counter() - t
        rules = [r for r in map(compile_rules, config.machines) if r is not None]
        derivation = Derivation(rules, ledger)
        profile = Profile(args.profile)
        gc.collect()
        reset_peak_rss()
        before = rss_mb()
        t, c = time.perf_counter(), time.process_time()
        with profile():
            md, _ = await derivation.rederive(name, start, end, splice=True)
        took, cpu = time.perf_counter() - t, time.process_time() - c
        peak = rss_mb("VmHWM")
        profile.report("Derivation.rederive, one machine")
        rows = await ledger.production.fetch(
            "SELECT coalesce(sum(total), 0) FROM part_counts WHERE machine_id = :m", {"m": name}, 1)
        intervals = await ledger.production.intervals(name, start, end)
        return {"readings": written, "write_s": write_s, "seconds": took, "cpu_s": cpu,
                "rss_before": before, "rss_peak": peak, "parts_made": sim.made,
                "parts_derived": int(rows[0][0]), "intervals": len(intervals),
                "taken": derivation.stats["readings"]}
    finally:
        await ledger.close()


# --- the run -------------------------------------------------------------------------------------
def run_backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from collector.runtime import run_service

    results: dict[str, Any] = {"backend": backend}
    parts = args.only.split(",")
    if "derive" in parts:
        with database(backend, tmp, "derive") as (url, schema):
            r = run_service(bench_derive(url, schema, args))
        results["derive"] = r
        ok = "ok" if r["cpu_pct"] < TARGETS["derive"] else "MISSED"
        print(f"{backend:10} derive   {args.machines} machines x 4 tags at 1 Hz, "
              f"{r['seconds']} s of data: {r['cpu_pct']:.3f}% of one core "
              f"({r['per_reading_us']:.2f} us/reading, slowest tick {r['slowest_ms']:.1f} ms, "
              f"wall {r['wall_pct']:.3f}%) (target < {TARGETS['derive']}%: {ok}); "
              f"ledger.write {r['write_pct']:.2f}% apart; parts made {r['parts_made']:,}, "
              f"derived {r['parts_derived']:,}; {r['intervals']:,} intervals; "
              f"wraps {r['wraps']}", flush=True)
    if "daily" in parts:
        end = local_midnight(0)
        start = end - args.days * DAY
        tz = ZoneInfo(TZ)
        first_day = datetime.fromtimestamp(start / S, tz).date()
        days = [first_day + timedelta(days=k) for k in range(1, args.days)] or [first_day]
        random.Random(6).shuffle(days)
        keep = None
        if args.keep_data:  # the same data again while the date is the same
            keep = str(Path(args.keep_data) / f"bench_prod_{args.machines}m_{args.days}d_{end // S}")
        with database(backend, tmp, "daily", keep) as (url, schema):
            if keep is not None and run_service(stored_days(url, schema)):
                print(f"{backend:10} reusing  {keep}", flush=True)
            else:
                built = run_service(build_daily(url, schema, args, start, end))
                results["built"] = built
                print(f"{backend:10} stored   {args.machines} machines x {args.days} days: "
                      f"{built['intervals']:,} intervals, {built['counts']:,} count events, "
                      f"{built['notes']:,} downtime reasons, in {built['seconds']:.0f} s",
                      flush=True)
            config = make_config(args.machines)
            r = run_service(bench_report(url, schema, config, start, end, days, args))
            r.update(run_service(bench_http(url, schema, config, end, days, args)))
        results["report"] = r
        for key, target, what in (("daily", "daily", "ProductionReport.daily"),
                                  ("http_daily", "daily", "GET /ledger/daily"),
                                  ("oee", "oee", "ProductionReport.oee 30 d"),
                                  ("http_oee", "oee", "GET /machines/{id}/oee 30 d")):
            p50, p95 = r[key]
            ok = "ok" if p95 < TARGETS[target] else "MISSED"
            extra = ""
            if key in ("daily", "oee"):
                extra = f", CPU p50 {r[key + '_cpu']:.1f} ms"
            if key == "daily":
                extra += f", first call {r['daily_cold_ms']:.0f} ms, {r['daily_rows']} rows"
            if key == "http_daily":
                extra += f", {r['http_daily_bytes']:,} B"
            print(f"{backend:10} {what:30} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
                  f"(target p95 < {TARGETS[target]:.0f} ms: {ok}){extra}", flush=True)
    if "rebuild" in parts:
        with database(backend, tmp, "rebuild") as (url, schema):
            r = run_service(bench_rebuild(url, schema, args))
        results["rebuild"] = r
        ok = "ok" if r["seconds"] < TARGETS["rebuild"] else "MISSED"
        print(f"{backend:10} rebuild  {args.days} days of one machine, {r['readings']:,} readings "
              f"(written in {r['write_s']:.0f} s): {r['seconds']:.1f} s, CPU {r['cpu_s']:.1f} s "
              f"(target < {TARGETS['rebuild']:.0f} s: {ok}); RSS {r['rss_before']:.0f} -> peak "
              f"{r['rss_peak']:.0f} MB; parts made {r['parts_made']:,}, derived "
              f"{r['parts_derived']:,}; {r['intervals']:,} intervals", flush=True)
    return results


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--derive-seconds", type=int, default=600,
                        help="simulated seconds of live derivation measured (after a warm-up "
                        "of a tenth of that)")
    parser.add_argument("--runs", type=int, default=30, help="requests per figure")
    parser.add_argument("--only", default="derive,daily,rebuild")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 10 machines, 2 days, 60 s of derivation, 5 runs")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured calls")
    parser.add_argument("--keep-data", metavar="DIR",
                        help="keep the daily part's stored data (SQLite file in DIR, or a "
                        "PostgreSQL schema) and use it again on the next run of the same day")
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve")
    srv.add_argument("--url", required=True)
    srv.add_argument("--schema")
    srv.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
        return 0
    # a SIGTERM ends the run like an error does: throw-away schemas and files are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.machines, args.days, args.derive_seconds, args.runs = 10, 2, 60, 5
    load = os.getloadavg()
    print(f"# production: {args.machines} machines, {args.days} days; {os.cpu_count()} CPUs "
          f"({cpu_model()}), Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
          f"load {load[0]:.2f}; speed reference {speed_reference():.0f} ms; code {code_version()}",
          flush=True)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="bench-production-") as tmp:
        for backend in backends:
            run_backend(backend, args, Path(tmp))
    print(f"# load at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
