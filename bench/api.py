"""REST API latency on a ledger of >= 10 million readings (2,000 series), 8 concurrent clients,
with and without ingest running, on SQLite and on PostgreSQL.

    .venv/bin/python bench/api.py [--backend sqlite|postgresql|both] [--clients 8]
                                  [--seconds 10] [--ingest-rate 2000] [--rebuild] [--drop]
                                  [--gc-freeze] [--http auto|h11|httptools]
                                  [--scenarios latest,aggregate,page,tags] [--workers N]

The first line gives a speed reference: milliseconds for a fixed piece of pure Python. This
VM's speed swings by up to 2x from hour to hour; scale by it before comparing two runs.
With ingest, each line also says how many readings/s the server kept writing while the
clients ran, and its slowest batch: the API must not starve the writer that shares its loop.

The ledger: 10 machines x 200 tags. Tag t000 of every machine is a 1 Hz series over 24 h
(86,400 readings each); the other 1,990 series hold 4,600 readings each over the same day.
The SQLite file is cached as /tmp/collector-bench-api.db and the PostgreSQL schema
`bench_api` in database `test` is kept between runs (--rebuild makes them again, --drop
removes the schema at the end).

The API runs under uvicorn in a child process (`bench/api.py serve ...`), as in `collector
run`: one process, one event loop; with ingest, that process also writes `--ingest-rate`
readings/s (every series at 1 Hz by default) through the ledger writer in 0.5 s batches.
With --gc-freeze the server calls gc.collect(); gc.freeze() once after start-up, as
`collector run` does: Python's full cyclic-GC collections, triggered by the tuples of large
pages, otherwise stall one request in ten by ~50 ms (the p95 of single-client pages on
PostgreSQL).
Scenarios: the latest values of a machine with 200 tags; 1-minute aggregates of a 1 Hz tag
over 24 h; a 10,000-row raw page of a 1 Hz tag; every one of the 2,000 tags with its newest
value (`/api/v1/tags`, the ARCHITECTURE.md target "latest values of 2,000 tags < 20 ms", one
request's latency: judged for one client).

The server has `api.workers` helper processes for large answers (pages and aggregates), one
per CPU by default; `--workers 0` builds everything in the server's own process, as it was
before helpers existed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import speed_reference  # noqa: E402
from collector.ledger import Ledger, MachineInfo, SeriesInfo  # noqa: E402
from collector.ledger.rollup import LATEST, RECOMPUTE, for_asyncpg, newest  # noqa: E402
from collector.model import SECONDS_BUCKETS, BucketCounts, Reading, SourceHealth, now_us  # noqa: E402

PG = os.environ.get("COLLECTOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_SCHEMA = "bench_api"
SQLITE_PATH = Path("/tmp/collector-bench-api.db")
MACHINES = 10
TAGS = 200
S = 1_000_000
DAY = 86_400 * S
END = 1_795_305_600_000_000  # 2026-11-21T00:00:00Z
START = END - DAY
SLOW_N = 4_600
TARGETS = {"latest": 20.0, "aggregate": 100.0, "page": 100.0, "tags": 20.0}


def machine(i: int) -> str:
    return f"m{i:02d}"


def tag(j: int) -> str:
    return f"t{j:03d}"


def expected_rows() -> int:
    return MACHINES * (86_400 + (TAGS - 1) * SLOW_N)


def series_rows(sid_of: dict[tuple[str, str], int]) -> Iterator[tuple[Any, ...]]:
    """Rows (series_id, ts, value, text, quality) series by series, in key order."""
    for (_m, t), sid in sorted(sid_of.items(), key=lambda kv: kv[1]):
        if t == "t000":
            step, n = S, 86_400
        else:
            step, n = DAY // SLOW_N, SLOW_N
        phase = (sid * 7919) % step  # series do not all tick on the same microsecond
        for k in range(n):
            yield (sid, START + phase + k * step, float((k * 37 + sid) % 1000) / 10.0, None, 0)


async def _prepare(ledger: Ledger) -> dict[tuple[str, str], int]:
    await ledger.open()
    await ledger.sync_config(
        [MachineInfo(machine(i), f"Machine {i}") for i in range(MACHINES)],
        [SeriesInfo(machine(i), tag(j), "A", "io", "modbus") for i in range(MACHINES)
         for j in range(TAGS)])
    # writing one reading per series fixes each series' kind (number), as live data would
    await ledger.write([Reading(machine(i), tag(j), START - S, 0.0)
                        for i in range(MACHINES) for j in range(TAGS)])
    return {(s.machine, s.tag): s.id for s in await ledger.catalogue.series()}


def rollup_ranges(chunk: list[tuple[Any, ...]]) -> list[tuple[int, int, int]]:
    """(series_id, from, to) covering every reading of each series in a chunk; a series cut
    between two chunks has its boundary minute recomputed from both parts by the second."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for sid, ts, *_ in chunk:
        first.setdefault(sid, ts)
        last[sid] = ts
    return [(sid, first[sid] - first[sid] % 60_000_000, last[sid] + 1) for sid in first]


def build_sqlite(rebuild: bool) -> None:
    if SQLITE_PATH.exists() and not rebuild:
        with sqlite3.connect(SQLITE_PATH) as conn:
            try:
                n = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
                if conn.execute("SELECT sum(n) FROM readings_1m").fetchone()[0] != n:
                    n = 0  # made before the rollups were filled: build again
            except sqlite3.Error:
                n = 0
        if n >= expected_rows():
            print(f"sqlite: using cached {SQLITE_PATH} ({n:,} readings)")
            return
    for suffix in ("", "-wal", "-shm"):
        Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
    t = time.perf_counter()

    async def prepare() -> dict[tuple[str, str], int]:
        ledger = Ledger(f"sqlite:///{SQLITE_PATH}")
        try:
            return await _prepare(ledger)
        finally:
            await ledger.close()

    sid_of = asyncio.run(prepare())
    conn = sqlite3.connect(SQLITE_PATH, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    rows = series_rows(sid_of)
    while True:
        chunk = [r for _, r in zip(range(500_000), rows, strict=False)]
        if not chunk:
            break
        conn.execute("BEGIN")
        conn.executemany("INSERT OR IGNORE INTO readings (series_id, ts, value, text, quality) "
                         "VALUES (?, ?, ?, ?, ?)", chunk)
        # the bulk load bypasses the writer: latest values and minute rollups as it keeps them
        conn.executemany(LATEST, [(*r, None, None) for r in newest(chunk)])  # no int, status
        conn.executemany(RECOMPUTE, rollup_ranges(chunk))
        conn.execute("COMMIT")
    conn.execute("ANALYZE")  # every table
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    conn.close()
    print(f"sqlite: built {n:,} readings in {time.perf_counter() - t:.0f} s "
          f"({SQLITE_PATH.stat().st_size / 1e6:.0f} MB)")


def build_postgresql(rebuild: bool) -> None:
    import asyncpg

    async def run() -> None:
        dsn = PG.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            if rebuild:
                await conn.execute(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
            exists = await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{PG_SCHEMA}.readings")
            n = await conn.fetchval(f"SELECT count(*) FROM {PG_SCHEMA}.readings") if exists else 0
            if n and await conn.fetchval(f"SELECT sum(n) FROM {PG_SCHEMA}.readings_1m") != n:
                n = 0  # made before the rollups were filled: build again
                await conn.execute(f"DROP SCHEMA {PG_SCHEMA} CASCADE")
                await conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
            if n >= expected_rows():
                print(f"postgresql: using cached schema {PG_SCHEMA} ({n:,} readings)")
                return
            t = time.perf_counter()
            ledger = Ledger(PG, schema=PG_SCHEMA)
            try:
                sid_of = await _prepare(ledger)
            finally:
                await ledger.close()
            rows = series_rows(sid_of)
            while True:
                chunk = [r for _, r in zip(range(500_000), rows, strict=False)]
                if not chunk:
                    break
                await conn.execute("CREATE TEMP TABLE IF NOT EXISTS load (LIKE "
                                   f"{PG_SCHEMA}.readings)")
                await conn.execute("TRUNCATE load")
                await conn.copy_records_to_table("load", records=chunk)
                await conn.execute(f"INSERT INTO {PG_SCHEMA}.readings SELECT * FROM load "
                                   "ON CONFLICT DO NOTHING")
                await conn.execute(f"SET search_path TO {PG_SCHEMA}")
                await conn.executemany(for_asyncpg(LATEST),
                                       [(*r, None, None) for r in newest(chunk)])
                await conn.executemany(for_asyncpg(RECOMPUTE), rollup_ranges(chunk))
                await conn.execute("RESET search_path")
            await conn.execute(f"VACUUM ANALYZE {PG_SCHEMA}.readings, {PG_SCHEMA}.readings_1m, "
                               f"{PG_SCHEMA}.latest_readings")
            n = await conn.fetchval(f"SELECT count(*) FROM {PG_SCHEMA}.readings")
            print(f"postgresql: built {n:,} readings in {time.perf_counter() - t:.0f} s")
        finally:
            await conn.close()

    asyncio.run(run())


# --- the server process -------------------------------------------------------------------
def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from api.app import create_app
    from collector.config import parse_config
    from collector.runtime import run_service

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    class Stats:
        write_seconds = BucketCounts(SECONDS_BUCKETS)

        def stats(self) -> dict[str, object]:
            return {"ok": True, "backlog": 0, "queued": 0, "dropped": 0, "written": 0,
                    "last_error": None}

    class Runtime:
        def __init__(self, ledger: Ledger):
            self.ledger, self.pipeline, self.derivation = ledger, Stats(), None
            self.health: list[SourceHealth] = []
            # the machines are this collector's own, as in `collector run` (their sources do
            # not matter here: the ingest task below stands in for them)
            workers = "" if args.workers is None else f", workers: {args.workers}"
            self.config = parse_config(f"api: {{enabled: false{workers}}}\nmachines:\n" + "".join(
                f"  - {{id: {machine(i)}, sources: []}}\n" for i in range(MACHINES)))

    ingested = {"rows": 0, "since": time.perf_counter(), "slowest": 0.0}

    async def ingest(ledger: Ledger, rate: int) -> None:
        pairs = [(machine(i), tag(j)) for i in range(MACHINES) for j in range(TAGS)]
        per_batch = max(1, rate // 2)
        base = max(END, now_us())  # new readings in every run, never replays of an earlier one
        k = 0
        while True:
            t = time.perf_counter()
            batch = []
            for _ in range(per_batch):
                m, g = pairs[k % len(pairs)]
                batch.append(Reading(m, g, base + (k // len(pairs)) * S, float(k % 1000)))
                k += 1
            await ledger.write(batch)
            took = time.perf_counter() - t
            ingested["rows"] += len(batch)
            ingested["slowest"] = max(ingested["slowest"], took)
            await asyncio.sleep(max(0.0, 0.5 - took))

    def ingest_report() -> dict[str, float]:
        """Readings/s written and the slowest batch since the last report: does ingest keep
        its rate while the API is under load?"""
        now = time.perf_counter()
        out = {"rate": ingested["rows"] / (now - ingested["since"]),
               "slowest_ms": ingested["slowest"] * 1000}
        ingested.update(rows=0, since=now, slowest=0.0)
        return out

    async def main() -> None:
        if args.switch_interval:
            sys.setswitchinterval(args.switch_interval)
        ledger = Ledger(args.url, schema=args.schema)
        await ledger.open()
        if args.gc_freeze:
            # start-up objects out of the cyclic GC's reach: its full collections otherwise
            # stall a request for ~50 ms every few large pages (see the module docstring)
            gc.collect()
            gc.freeze()
        tasks = [asyncio.create_task(ingest(ledger, args.ingest_rate))] if args.ingest_rate else []
        app = create_app(Runtime(ledger))
        await app.state.offload.start()
        app.add_api_route("/bench/ingest", ingest_report)
        server = Server(uvicorn.Config(app, host="127.0.0.1", port=args.port,
                                       log_level="warning", access_log=False, lifespan="off",
                                       http=args.http))
        # SIGTERM ends the server and then this function, as in `collector run` (uvicorn's own
        # handling re-raises the signal at the end, and the process dies before it cleans up)
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM, lambda: setattr(server, "should_exit", True))
        await server.serve()
        for task in tasks:
            task.cancel()
        await app.state.offload.close()
        await ledger.close()

    run_service(main())  # the event loop `collector run` uses


# --- the clients --------------------------------------------------------------------------
def scenario_url(name: str, rng: random.Random) -> str:
    m = machine(rng.randrange(MACHINES))
    if name == "latest":
        return f"/api/v1/machines/{m}/latest"
    if name == "tags":  # every one of the 2,000 tags with its newest value
        return "/api/v1/tags"
    if name == "aggregate":
        return (f"/api/v1/readings/aggregate?machine={m}&tag=t000&bucket=1m"
                f"&start={START // 1000}&end={END // 1000}")
    start = START + rng.randrange(0, DAY - 10_100 * S) // S * S
    return f"/api/v1/readings?machine={m}&tag=t000&start={start // 1000}&limit=10000"


class Http:
    """A minimal HTTP/1.1 keep-alive client: the load generator shares the machine's two
    cores with the server, and httpx spends several times more CPU per request than this."""

    def __init__(self, base: str):
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, url: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {url} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def measure(base: str, name: str, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    sizes: list[int] = []
    deadline = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        http = Http(base)
        try:
            await http.get(scenario_url(name, rng))  # warm the connection
            while time.perf_counter() < deadline:
                url = scenario_url(name, rng)
                t = time.perf_counter()
                status, body = await http.get(url)
                latencies.append((time.perf_counter() - t) * 1000)
                if status != 200:
                    raise RuntimeError(f"{url}: {status} {body[:200]!r}")
                sizes.append(len(body))
        finally:
            await http.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return {"n": len(latencies), "p50": q[49], "p95": q[94], "rps": len(latencies) / elapsed,
            "bytes": int(statistics.mean(sizes))}


def start_server(url: str, schema: str | None, ingest_rate: int, gc_freeze: bool = False,
                 http: str = "auto", workers: int | None = None
                 ) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    from tests.kit.ports import free_port

    port = free_port()
    cmd = [sys.executable, __file__, "serve", "--url", url, "--port", str(port),
           "--ingest-rate", str(ingest_rate)] + (["--schema", schema] if schema else []) \
        + (["--gc-freeze"] if gc_freeze else []) + ["--http", http] \
        + (["--workers", str(workers)] if workers is not None else []) \
        + (["--switch-interval", os.environ["BENCH_SWITCH"]] if "BENCH_SWITCH" in os.environ else [])
    proc = subprocess.Popen(cmd)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/v1/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("the API server did not start")


def run_backend(backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    import httpx

    url, schema = (f"sqlite:///{SQLITE_PATH}", None) if backend == "sqlite" else (PG, PG_SCHEMA)
    results = []
    for ingest in sorted({0, args.ingest_rate}):
        proc, base = start_server(url, schema, ingest, args.gc_freeze, args.http,
                                  args.workers)
        try:
            for name in args.scenarios.split(","):
                for clients in sorted({1, args.clients}):
                    if ingest:
                        httpx.get(base + "/bench/ingest")  # start counting afresh
                    r = asyncio.run(measure(base, name, clients, args.seconds))
                    r.update(backend=backend, ingest=ingest, scenario=name, clients=clients)
                    written = ""
                    if ingest:
                        r["ingest"] = httpx.get(base + "/bench/ingest").json()
                        written = (f"  ingest {r['ingest']['rate']:,.0f}/s, slowest batch "
                                   f"{r['ingest']['slowest_ms']:.0f} ms")
                    results.append(r)
                    ok = "ok" if r["p95"] < TARGETS[name] else "MISSED"
                    target = f"(target p95 < {TARGETS[name]:.0f} ms: {ok})"
                    if name == "tags" and clients > 1:  # ARCHITECTURE.md's target is per request
                        target = "(target is for one client)"
                    print(f"{backend:10} ingest={ingest:5}/s {name:9} clients={clients}: "
                          f"p50 {r['p50']:7.1f} ms  p95 {r['p95']:7.1f} ms  "
                          f"{r['rps']:7.1f} req/s  n={r['n']:5}  {r['bytes']:9,} B  "
                          f"{target}{written}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve")
    srv.add_argument("--url", required=True)
    srv.add_argument("--schema")
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--ingest-rate", type=int, default=0)
    srv.add_argument("--gc-freeze", action="store_true")
    srv.add_argument("--http", default="auto")
    srv.add_argument("--switch-interval", type=float, default=0)
    srv.add_argument("--workers", type=int, default=None)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ingest-rate", type=int, default=2000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--drop", action="store_true")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() in the server after start-up")
    parser.add_argument("--http", choices=["auto", "h11", "httptools"], default="auto",
                        help="uvicorn's HTTP parser (auto: httptools when installed); with "
                        "COLLECTOR_EVENT_LOOP=asyncio and --http h11, the server as it was "
                        "before uvloop and httptools")
    parser.add_argument("--scenarios", default="latest,aggregate,page,tags")
    parser.add_argument("--workers", type=int, default=None,
                        help="api.workers of the server (default: one fewer than the CPUs; "
                        "0: every answer built in the server's own process)")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
        return 0
    print(f"{os.cpu_count()} CPUs; {expected_rows():,} readings in {MACHINES * TAGS} series; "
          f"speed reference {speed_reference():.0f} ms")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        (build_sqlite if backend == "sqlite" else build_postgresql)(args.rebuild)
    for backend in backends:
        run_backend(backend, args)
    if args.drop and "postgresql" in backends:
        subprocess.run(["psql", PG, "-q", "-c", f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"],
                       check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
