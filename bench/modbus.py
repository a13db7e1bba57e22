"""Modbus polling benchmark: simulated devices at 1 Hz, all the way into a SQLite ledger.

    .venv/bin/python bench/modbus.py --seconds 60
    .venv/bin/python bench/modbus.py --registers 1000 --devices 2 --seconds 60

The simulated devices (pymodbus TCP servers) run in a separate process, so only the
collector's CPU is measured.

The first form: 2,000 tags of mixed types on 20 devices through the full Runtime in this
process; prints requests per scan against the minimum, the collector's CPU share of one core,
scan jitter p50/p99/max, readings stored, and RSS.

With `--registers N`: each device serves N holding registers on unit 1, one uint16 tag each
(read in blocks of 125, as a gateway configured register by register would), and the
collector runs as `collector run -c FILE` in a process of its own, its API on (`--workers`
sets `api.workers`) and nobody asking it anything; prints the CPU time of the collector
process and of its child processes (the API workers) as shares of one core, the RSS of the
collector and of all its processes, the bytes the collector writes (what wears a box's flash
storage), and the load average. `--tree DIR` runs the collector of
another checkout of this repository (for before/after runs).
Targets (ARCHITECTURE.md): requests = minimum, CPU < 4% of a core, jitter p99 < 20 ms;
2,000 registers at ≤ 1.2% of a core, the collector ≤ 110 MB RSS.
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

from bench.common import speed_reference  # noqa: E402
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

def simulate(ports: list[int], registers: int = 0) -> None:
    """Serve one pymodbus device per port until SIGTERM; values change every second.
    `registers`: that many holding registers each instead of the mixed layout."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a closed client is no news

    async def main() -> None:
        servers = []
        for port in ports:
            regs = [SimData(0, count=max(200, registers), values=0,
                            datatype=DataType.REGISTERS)]
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
            for k, server in enumerate(servers):
                if registers:  # every register changes every second
                    await server.async_setValues(
                        1, 3, 0, [(tick * 7 + i + k) & 0xFFFF for i in range(registers)])
                    continue
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
        result["readings_in_ledger"] = stored_readings(db)
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


# --- the collector as `collector run`, a process of its own ------------------------------------

REGISTER_BLOCK = 125  # registers per request, the Modbus maximum


def register_config_text(folder: Path, ports: list[int], registers: int, api_port: int,
                         workers: int | None, flush_interval: float | None = None) -> str:
    import yaml

    api: dict[str, object] = {"host": "127.0.0.1", "port": api_port}
    if workers is not None:
        api["workers"] = workers
    machines = [{
        "id": f"m{i:02d}",
        "sources": [{"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": port,
                     "interval": "1s", "timeout": "500ms",
                     "tags": [{"name": f"r{a}", "register": "holding", "address": a,
                               "type": "uint16"} for a in range(registers)]}],
    } for i, port in enumerate(ports)]
    return yaml.safe_dump({
        "ledger": {"url": f"sqlite:///{folder}/ledger.db"},
        "spool": {"path": str(folder / "spool.db")},
        "api": api,
        **({"pipeline": {"flush_interval": flush_interval}} if flush_interval else {}),
        "machines": machines,
    })


def prefill(folder: Path, devices: int, registers: int, minutes: int, seconds: int) -> None:
    """A ledger with history, as after hours of running: `minutes` of one reading a minute,
    then `seconds` of one a second, for every tag. A fresh ledger flatters the writer: while
    a series has fewer rows than a page holds, one commit's rows share pages; in a ledger with
    history every series' newest rows are a page of their own, and each commit writes one
    page per series it touches."""
    from collector.ledger import Ledger
    from collector.model import Reading

    async def fill() -> None:
        ledger = Ledger(f"sqlite:///{folder}/ledger.db")
        await ledger.open()
        now = int(time.time()) * 1_000_000
        stamps = [now - (minutes * 60 + seconds) * 1_000_000 + m * 60_000_000
                  for m in range(minutes)]
        stamps += [now - (seconds - s) * 1_000_000 for s in range(seconds)]
        names = [(f"m{i:02d}", f"r{a}") for i in range(devices) for a in range(registers)]
        batch: list[Reading] = []
        for ts in stamps:
            batch += [Reading(m, t, ts, (ts // 1_000_000 + a) & 0xFFFF)
                      for a, (m, t) in enumerate(names)]
            if len(batch) >= 100_000:
                await ledger.write(batch)
                batch = []
        await ledger.write(batch)
        await ledger.close()

    asyncio.run(fill())


def stored_readings(db: sqlite3.Connection) -> int:
    """Readings in the ledger, of this tree's schema or an older one's (before migration 0007
    every reading was in `readings`)."""
    try:
        return int(db.execute("SELECT count(*) FROM readings_all").fetchone()[0])
    except sqlite3.OperationalError:
        return int(db.execute("SELECT count(*) FROM readings").fetchone()[0])


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents.setdefault(st[0], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def process_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def written_bytes(pid: int) -> tuple[int, int]:
    """(bytes handed to write calls, bytes the process caused to be written to storage) so
    far, from /proc/PID/io: the first counts every WAL frame and checkpoint page, the second
    what reached the disk (0 on tmpfs)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["wchar"]), int(fields["write_bytes"])


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    return {pid: st[1] for pid in pids if (st := _stat(pid)) is not None}


def measure_process(folder: Path, ports: list[int], registers: int, seconds: float,
                    warmup: float, workers: int | None, tree: Path,
                    history: tuple[int, int], flush_interval: float | None = None
                    ) -> dict[str, Any]:
    import json
    import urllib.request

    from tests.kit.ports import free_port, port_open

    api_port = free_port()
    config = folder / "collector.yaml"
    config.write_text(register_config_text(folder, ports, registers, api_port, workers,
                                            flush_interval))
    if history != (0, 0):
        # by the measured tree's own ledger code, so that its schema is the one that tree runs
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--tree", str(tree),
                        "--prefill", str(folder), str(len(ports)), str(registers),
                        str(history[0]), str(history[1])], check=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    speed0 = speed_reference()
    load0 = os.getloadavg()
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "--log-level", "warning",
                             "run", "-c", str(config)], cwd=tree, env=env)
    try:
        started = time.monotonic()
        while not port_open(api_port):  # the API listens once every source runs
            if proc.poll() is not None:
                raise RuntimeError(f"the collector exited with {proc.returncode}")
            if time.monotonic() - started > 300:
                raise RuntimeError("the collector did not start within 300 s")
            time.sleep(0.2)
        time.sleep(warmup)
        rss_started = process_rss_mb(proc.pid)
        children = descendants(proc.pid)
        cpu0, wall0 = cpu_seconds([proc.pid, *children]), time.monotonic()
        io0 = written_bytes(proc.pid)
        time.sleep(seconds)
        wall = time.monotonic() - wall0
        io = written_bytes(proc.pid)
        children = descendants(proc.pid)
        cpu = cpu_seconds([proc.pid, *children])
        used = {pid: cpu[pid] - cpu0.get(pid, 0.0) for pid in cpu}
        rss = process_rss_mb(proc.pid)
        rss_children = {pid: process_rss_mb(pid) for pid in children}
        load = os.getloadavg()
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/health") as answer:
            health = json.load(answer)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    speed = (speed0, speed_reference())
    details = [s.get("details") or {} for s in health.get("sources", [])]
    with sqlite3.connect(folder / "ledger.db") as db:
        stored = stored_readings(db)
    return {
        "sources": len(ports), "tags": len(ports) * registers, "seconds": wall,
        "requests_per_scan": sum(int(d.get("requests_per_scan", 0)) for d in details),
        "known_minimum": len(ports) * -(-registers // REGISTER_BLOCK),
        "jitter_p99_ms": max((float(d.get("jitter_p99_ms", 0)) for d in details), default=0.0),
        "overruns": sum(int(d.get("overruns", 0)) for d in details),
        "cpu_share": used.get(proc.pid, 0.0) / wall,
        "children_cpu_share": sum(v for pid, v in used.items() if pid != proc.pid) / wall,
        "rss_started_mb": rss_started, "rss_mb": rss,
        "children": len(rss_children), "rss_all_mb": rss + sum(rss_children.values()),
        "readings_in_ledger": stored, "load": (load0[0], load[0]), "history": history,
        "written_per_s": ((io[0] - io0[0]) / wall, (io[1] - io0[1]) / wall),
        "speed": speed,
    }


def report_process(r: dict[str, Any]) -> str:
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    return "\n".join([
        "== Modbus polling benchmark, collector run ==",
        f"devices / tags           {r['sources']} / {r['tags']} holding registers at 1 Hz for "
        f"{r['seconds']:.0f} s (after warm-up)",
        f"requests per scan        {r['requests_per_scan']} (known minimum {r['known_minimum']})"
        f" {ok(r['requests_per_scan'] == r['known_minimum'])}",
        f"collector CPU            {100 * r['cpu_share']:.2f}% of one core; its child processes "
        f"{100 * r['children_cpu_share']:.2f}%",
        f"scan jitter p99          {r['jitter_p99_ms']:.2f} ms (worst source); overruns "
        f"{r['overruns']}",
        f"readings in the ledger   {r['readings_in_ledger']} (whole run incl. warm-up; history "
        f"of {r['history'][0]} min at 1/min and {r['history'][1]} s at 1 Hz before it)",
        f"collector RSS            {r['rss_mb']:.1f} MB ({r['rss_started_mb']:.1f} MB after the "
        f"warm-up)",
        f"all its processes RSS    {r['rss_all_mb']:.1f} MB ({r['children']} child processes)",
        f"written by the collector {r['written_per_s'][0] / 1e6:.2f} MB/s in write calls "
        f"({r['written_per_s'][0] / r['tags']:.0f} B per reading, "
        f"{r['written_per_s'][0] * 86400 / 1e9:.0f} GB a day), "
        f"{r['written_per_s'][1] / 1e6:.2f} MB/s to storage",
        f"load average (1 min)     {r['load'][0]:.2f} at start, {r['load'][1]:.2f} at the end",
        f"speed reference          {r['speed'][0]:.0f} ms before, {r['speed'][1]:.0f} ms after "
        f"(bench/common.py; this VM's speed swings, and CPU shares with it)",
    ])


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
    parser.add_argument("--registers", type=int, default=0,
                        help="N holding registers per device, one uint16 tag each, the "
                             "collector as `collector run` (default: the mixed 100-tag layout)")
    parser.add_argument("--devices", type=int, default=DEVICES,
                        help=f"simulated devices (default {DEVICES})")
    parser.add_argument("--workers", type=int, default=None,
                        help="api.workers of the collector (with --registers; default: its own)")
    parser.add_argument("--history", type=int, nargs=2, default=(120, 300),
                        metavar=("MINUTES", "SECONDS"),
                        help="with --registers: ledger history written before the collector "
                             "starts, MINUTES at one reading a minute then SECONDS at 1 Hz per "
                             "tag (default 120 300; 0 0: a fresh ledger)")
    parser.add_argument("--flush-interval", type=float, default=None,
                        help="with --registers: pipeline.flush_interval in seconds (default: "
                             "the collector's own)")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the checkout whose collector runs (with --registers)")
    parser.add_argument("--simulate", nargs="+", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefill", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prefill:
        sys.path.insert(0, str(args.tree.resolve()))
        folder, *numbers = args.prefill
        prefill(Path(folder), *map(int, numbers))  # type: ignore[call-arg]
        return 0
    if args.simulate:
        simulate(args.simulate, args.registers)
        return 0
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # shutdown noise of the run
    ports = free_ports(args.devices if args.registers else DEVICES)
    sim = subprocess.Popen([sys.executable, __file__, "--registers", str(args.registers),
                            "--simulate", *map(str, ports)], stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        if sim.stdout.readline().strip() != "ready":
            print("error: the device simulator did not start", file=sys.stderr)
            return 1
        if args.registers:
            with tempfile.TemporaryDirectory(prefix="bench-modbus-") as tmp:
                result = measure_process(Path(tmp), ports, args.registers, args.seconds,
                                         args.warmup, args.workers,
                                         args.tree.resolve(), tuple(args.history),
                                         args.flush_interval)
            print(report_process(result))
            return 0
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
