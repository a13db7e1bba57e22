"""OPC UA benchmark: N monitored items changing at 1 Hz, through the full Runtime into SQLite.

The server runs in a separate process (its CPU is not counted). Every second it writes tick k
to all N variables (SourceTimestamp = write time). The collector subscribes through the normal
adapter, pipeline and ledger. Reported: collector CPU share of one core, RSS, end-to-end
latency (server write -> committed in the ledger) p50/p99, and lost change notifications
(ticks missing from the ledger between a tag's first value and the last tick).

    .venv/bin/python bench/opcua.py --seconds 60 [--nodes 5000] [--interval 500ms]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit.ports import free_port  # noqa: E402

# ---- server process -----------------------------------------------------------------------

async def serve(port: int, nodes: int, ticks: int) -> None:
    from datetime import UTC, datetime

    from asyncua import Server, ua

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.disable_clock()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}")
    idx = await server.register_namespace("urn:bench")
    folder = await server.nodes.objects.add_object(idx, "Bench")
    ids = []
    for i in range(nodes):
        var = await folder.add_variable(ua.NodeId(f"V{i}", idx), f"V{i}", ua.Variant(0.0, ua.VariantType.Double))
        ids.append(var.nodeid)
    await server.start()
    print("ready", flush=True)
    # wait for the collector to say it is subscribed before ticking
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start = time.monotonic()
    for k in range(1, ticks + 1):
        await asyncio.sleep(max(0.0, start + k - time.monotonic()))
        now = datetime.now(UTC)
        for n, nodeid in enumerate(ids):
            await server.write_attribute_value(nodeid, ua.DataValue(
                Value=ua.Variant(float(k), ua.VariantType.Double), SourceTimestamp=now, ServerTimestamp=now))
            if n % 500 == 499:
                await asyncio.sleep(0)
        late = time.monotonic() - (start + k)
        if late > 0.9:
            print(f"server: tick {k} took {late:.2f}s (server too slow)", file=sys.stderr, flush=True)
    print(f"done {ticks}", flush=True)
    await asyncio.sleep(3600)


# ---- collector side ---------------------------------------------------------------------

def config_text(port: int, nodes: int, interval: str, data: Path) -> str:
    tags = "\n".join(f"          - {{name: v{i}, node: \"ns=2;s=V{i}\"}}" for i in range(nodes))
    return f"""
ledger: {{url: "sqlite:///{data}/ledger.db"}}
spool: {{path: "{data}/spool.db"}}
api: {{enabled: false}}
machines:
  - id: bench
    sources:
      - id: plc
        protocol: opcua
        endpoint: opc.tcp://127.0.0.1:{port}
        interval: {interval}
        tags:
{tags}
"""


def current_rss_mb() -> int:
    """Resident memory now (not the peak, which the final ledger scan would dominate)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def percentile(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] / 1000.0


async def bench(args: argparse.Namespace) -> dict[str, object]:
    from adapters.base import registry
    from collector.config import parse_config
    from collector.model import now_us
    from collector.runtime import Runtime

    registry()  # the adapters' source models, for parse_config
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    port = free_port()
    ticks = int(args.seconds) + 5
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--nodes", str(args.nodes),  # noqa: ASYNC220
                               "--ticks", str(ticks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout and server.stdin
        line = await asyncio.to_thread(server.stdout.readline)
        assert line.strip() == "ready", line
        data = Path(tempfile.mkdtemp(prefix="bench-opcua-"))
        config = parse_config(config_text(port, args.nodes, args.interval, data), base_dir=str(data))
        async with Runtime(config) as rt:
            latencies: list[int] = []
            original = rt.ledger.write

            async def timed_write(batch):  # committed -> latency of every reading in the batch
                written = await original(batch)
                now = now_us()
                latencies.extend(now - r.ts for r in batch)
                return written

            rt.ledger.write = timed_write  # type: ignore[method-assign]
            health = rt.health_of("bench", "plc")
            t0 = time.monotonic()
            while health.extra.get("monitored_items") != args.nodes:
                if time.monotonic() - t0 > 120:
                    raise SystemExit(f"not subscribed after 120 s: {health.last_error}")
                await asyncio.sleep(0.1)
            setup_s = time.monotonic() - t0
            await asyncio.sleep(1.0)  # initial values in
            latencies.clear()
            server.stdin.write("go\n")
            server.stdin.flush()
            await asyncio.sleep(3)  # warm-up ticks are not measured
            latencies.clear()
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            cpu0, wall0, readings0 = time.process_time(), time.monotonic(), health.readings
            await asyncio.sleep(args.seconds)
            cpu1, wall1, readings1 = time.process_time(), time.monotonic(), health.readings
            rss_mb = current_rss_mb()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            measured = list(latencies)
            line = await asyncio.to_thread(server.stdout.readline)
            assert line.startswith("done"), line
            await asyncio.sleep(2.0 + float(args.interval.rstrip("ms")) / 1000 if args.interval.endswith("ms") else 3.0)
            await rt.pipeline.flush()
            lost, received = await count_lost(rt, args.nodes, ticks)
            result = {
                "nodes": args.nodes,
                "seconds": round(wall1 - wall0, 1),
                "interval": args.interval,
                "subscribe_setup_s": round(setup_s, 2),
                "readings_per_s": round((readings1 - readings0) / (wall1 - wall0)),
                "cpu_share_of_one_core": round((cpu1 - cpu0) / (wall1 - wall0), 4),
                "rss_mb": rss_mb,
                "latency_ms_p50": round(percentile(measured, 50), 1),
                "latency_ms_p99": round(percentile(measured, 99), 1),
                "latency_ms_max": round(max(measured) / 1000, 1) if measured else None,
                "ticks_in_ledger": received,
                "lost_notifications": lost,
                "reconnects": health.errors,
            }
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


async def count_lost(rt, nodes: int, ticks: int) -> tuple[int, int]:
    """Ticks missing per tag between its first tick seen and the last tick written."""
    from collector.ledger import PageQuery
    from collector.model import now_us

    series = await rt.ledger.catalogue.find("bench")
    seen: dict[int, set[int]] = {s.id: set() for s in series}
    async for p in rt.ledger.pages.points(PageQuery.of(series, 0, now_us() + 10**9, 10**8)):
        if p.value:
            seen[p.series_id].add(int(p.value))
    lost = received = 0
    for values in seen.values():
        ticks_seen = {v for v in values if v >= 1}
        received += len(ticks_seen)
        first = min(ticks_seen) if ticks_seen else 1
        lost += sum(1 for k in range(first, ticks + 1) if k not in ticks_seen)
    return lost, received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--interval", default="500ms", help="publishing interval of the subscription")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--profile", help="write a cProfile of the measured window to this file")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.nodes, args.ticks))
        return 0
    result = asyncio.run(bench(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
        ok = result["cpu_share_of_one_core"] < 0.15 and result["lost_notifications"] == 0
        print(f"{'target (<15% CPU, 0 lost)':24} {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
