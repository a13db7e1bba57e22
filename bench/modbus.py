"""Modbus polling benchmark: 2,000 tags on 20 simulated devices at 1 Hz, all the way into a
SQLite ledger through the full Runtime.

    .venv/bin/python bench/modbus.py --seconds 60

The simulated devices (pymodbus TCP servers) run in a separate process, so only the
collector's CPU is measured. Prints requests per scan against the minimum, the collector's
CPU share of one core, scan jitter p50/p99/max, readings stored, and RSS.
Targets (ARCHITECTURE.md): requests = minimum, CPU < 4% of a core, jitter p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit.ports import free_ports  # noqa: E402

DEVICES = 20
# per device: 40 float32 input registers (0..79), 30 uint16 holding (0..29), 10 int32 CDAB
# holding (40..59, 10 unused registers before them: read through), 10 bools from bits of
# holding 100 (40 unused before: a request of its own) and 10 coils: 100 tags, and by
# construction 4 requests: input 0..79, holding 0..59, holding 100, coils 0..9
TAGS_PER_DEVICE = 100
MIN_REQUESTS_PER_DEVICE = 4


def device_tags() -> list[dict[str, object]]:
    tags: list[dict[str, object]] = []
    tags += [{"name": f"f{i}", "register": "input", "address": 2 * i, "type": "float32"}
             for i in range(40)]
    tags += [{"name": f"u{i}", "register": "holding", "address": i, "type": "uint16",
              "scale": 0.1} for i in range(30)]
    tags += [{"name": f"l{i}", "register": "holding", "address": 40 + 2 * i, "type": "int32",
              "byte_order": "CDAB"} for i in range(10)]
    tags += [{"name": f"b{i}", "register": "holding", "address": 100, "type": "bool", "bit": i}
             for i in range(10)]
    tags += [{"name": f"c{i}", "register": "coil", "address": i} for i in range(10)]
    assert len(tags) == TAGS_PER_DEVICE
    return tags


# --- the simulator process -------------------------------------------------------------------

def simulate(ports: list[int]) -> None:
    """Serve one pymodbus device per port until SIGTERM; values change every second."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a closed client is no news

    async def main() -> None:
        servers = []
        for port in ports:
            regs = [SimData(0, count=200, values=0, datatype=DataType.REGISTERS)]
            bits = [SimData(0, count=32, values=False, datatype=DataType.BITS)]
            server = ModbusTcpServer([SimDevice(1, simdata=(bits, bits, regs, list(regs)))],
                                     address=("127.0.0.1", port))
            await server.serve_forever(background=True)
            servers.append(server)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        tick = 0
        while not stop.is_set():
            tick += 1
            for server in servers:
                await server.async_setValues(1, 4, 0, [0x4365, 0xB333 + tick % 64] * 40)
                await server.async_setValues(1, 3, 0, [(tick + i) % 1000 for i in range(60)])
                await server.async_setValues(1, 3, 100, [tick & 0x3FF])
                await server.async_setValues(1, 1, 0, [bool((tick >> i) & 1) for i in range(10)])
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
        for server in servers:
            await server.shutdown()

    asyncio.run(main())


# --- the collector side ------------------------------------------------------------------------

def config_text(folder: Path, ports: list[int]) -> str:
    import yaml

    machines = [{
        "id": f"m{i:02d}",
        "sources": [{"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": port,
                     "interval": "1s", "timeout": "500ms", "tags": device_tags()}],
    } for i, port in enumerate(ports)]
    return yaml.safe_dump({
        "ledger": {"url": f"sqlite:///{folder}/ledger.db"},
        "spool": {"path": str(folder / "spool.db")},
        "api": {"enabled": False},
        "machines": machines,
    })


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else 0.0


async def measure(folder: Path, ports: list[int], seconds: float, warmup: float) -> dict[str, Any]:
    from adapters.base import registry
    from adapters.modbus.adapter import ModbusAdapter
    from collector.config import parse_config
    from collector.runtime import Runtime

    created: list[ModbusAdapter] = []
    spec = registry()["modbus"]

    def recording_factory(ctx: Any) -> Any:
        adapter = spec.factory(ctx)
        assert isinstance(adapter, ModbusAdapter)
        created.append(adapter)
        return adapter

    registry()["modbus"] = dataclasses.replace(spec, factory=recording_factory)
    config = parse_config(config_text(folder, ports))
    try:
        async with Runtime(config) as rt:
            await asyncio.sleep(warmup)
            for adapter in created:
                adapter.jitter.clear()
            overruns0 = sum(a.overruns for a in created)
            scans0 = sum(a.scans for a in created)
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            jitter = [j for a in created for j in a.jitter]
            result: dict[str, Any] = {
                "sources": len(created),
                "tags": sum(len(a.all_tags) for a in created),
                "scans": sum(a.scans for a in created) - scans0,
                "requests_per_scan": sum(a.requests for a in created),
                "planned_minimum": sum(a.min_requests for a in created),
                "known_minimum": MIN_REQUESTS_PER_DEVICE * DEVICES,
                "cpu_share": cpu / wall,
                "jitter_p50_ms": quantile(jitter, 0.50) * 1000,
                "jitter_p99_ms": quantile(jitter, 0.99) * 1000,
                "jitter_max_ms": max(jitter) * 1000 if jitter else 0.0,
                "overruns": sum(a.overruns for a in created) - overruns0,
                "errors": sum(h.errors for h in rt.health),
                "scan_time_ms": max(h.scan_time or 0 for h in rt.health) * 1000,
                "rss_mb": rss_mb(),
                "seconds": wall,
            }
    finally:
        registry()["modbus"] = spec
    with sqlite3.connect(folder / "ledger.db") as db:
        result["readings_in_ledger"] = db.execute("SELECT count(*) FROM readings").fetchone()[0]
    return result


async def measure_polling_only(ports: list[int], seconds: float, warmup: float) -> float:
    """CPU share of the 20 pollers alone (readings dropped): the Modbus part of the total."""
    from adapters.base import AdapterContext
    from adapters.modbus.adapter import ModbusAdapter
    from collector.config import parse_config
    from collector.model import SourceHealth

    class Drop:
        async def put(self, readings: object, *, wait: bool = False) -> None:
            return None

    config = parse_config(config_text(Path(tempfile.gettempdir()), ports))
    tasks = [asyncio.create_task(ModbusAdapter(AdapterContext(
        m, m.sources[0], Drop(), SourceHealth(m.id, "plc", "modbus"))).run())
        for m in config.machines]
    await asyncio.sleep(warmup)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return share


def report(r: dict[str, Any]) -> str:
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    return "\n".join([
        "== Modbus polling benchmark ==",
        f"devices / tags           {r['sources']} / {r['tags']} at 1 Hz for {r['seconds']:.0f} s "
        f"(after warm-up)",
        f"requests per scan        {r['requests_per_scan']} (planner minimum "
        f"{r['planned_minimum']}, known minimum {r['known_minimum']}) "
        f"{ok(r['requests_per_scan'] == r['known_minimum'])}",
        f"collector CPU            {100 * r['cpu_share']:.2f}% of one core (target < 4%) "
        f"{ok(r['cpu_share'] < 0.04)}"
        + (f"; polling alone {100 * r['polling_cpu_share']:.2f}%"
           if "polling_cpu_share" in r else ""),
        f"scan jitter              p50 {r['jitter_p50_ms']:.2f} ms, p99 {r['jitter_p99_ms']:.2f} ms"
        f" (target < 20 ms) {ok(r['jitter_p99_ms'] < 20)}, max {r['jitter_max_ms']:.2f} ms",
        f"longest last scan        {r['scan_time_ms']:.1f} ms; overruns {r['overruns']}; "
        f"errors {r['errors']}",
        f"scans measured           {r['scans']}",
        f"readings in the ledger   {r['readings_in_ledger']} (whole run incl. warm-up)",
        f"collector RSS            {r['rss_mb']:.1f} MB",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured start (default 5)")
    parser.add_argument("--polling-only", action="store_true",
                        help="also measure the pollers alone, without pipeline and ledger")
    parser.add_argument("--simulate", nargs="+", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        simulate(args.simulate)
        return 0
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # shutdown noise of the run
    ports = free_ports(DEVICES)
    sim = subprocess.Popen([sys.executable, __file__, "--simulate", *map(str, ports)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        if sim.stdout.readline().strip() != "ready":
            print("error: the device simulator did not start", file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory(prefix="bench-modbus-") as tmp:
            result = asyncio.run(measure(Path(tmp), ports, args.seconds, args.warmup))
        if args.polling_only:
            result["polling_cpu_share"] = asyncio.run(
                measure_polling_only(ports, args.seconds, args.warmup))
    finally:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(sim.pid, signal.SIGKILL)
            sim.wait()
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
