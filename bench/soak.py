"""Soak run: `collector run` for hours against a Modbus device, an OPC UA server and a Mosquitto
under steady load, sampled every minute; fails when memory, open files, sockets, threads,
asyncio tasks or API latency keep growing.

Every `--every` seconds one line: RSS, open files, sockets, threads (from /proc), asyncio tasks
(`collector_asyncio_tasks` from /metrics), API latency p50/p95 of the newest values and of a
page of 1,000 readings, readings in the ledger, spool backlog. At the end the median of the
last quarter of the samples is compared with the median of the first quarter (after
`--warmup` samples): growth past the bounds below is a failure (exit 1).

    .venv/bin/python bench/soak.py --minutes 240          # a run of hours (not in CI)
    .venv/bin/python bench/soak.py --minutes 10 --json     # the short proof
    .venv/bin/python bench/soak.py --minutes 150 --samples soak.json --plot soak.png

`--plot` draws the samples (RSS; open files, sockets, threads, tasks; API latency) with
matplotlib, which the box does not need: `.venv/bin/pip install '.[bench]'` first.
`--plot` with `--from soak.json` draws an earlier run's samples without running again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit.collector import CollectorProcess, metric  # noqa: E402
from tests.kit.plant import Plant  # noqa: E402

# growth (last quarter's median over the first quarter's) that fails the run
RSS_GROWTH_MB = 15.0
RSS_GROWTH_SHARE = 0.15
FDS_GROWTH = 5
THREADS_GROWTH = 3
TASKS_GROWTH = 5
LATENCY_FACTOR = 3.0  # p95 may triple ...
LATENCY_SLACK_MS = 50.0  # ... plus this, before it counts as growth


def latency(client: httpx.Client, path: str, params: dict[str, Any], n: int = 20) -> tuple[float, float]:
    """p50 and p95 in ms of `n` GETs of `path`."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, params=params)
        response.raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return round(times[len(times) // 2], 2), round(times[int(len(times) * 0.95) - 1], 2)


def sample(collector: CollectorProcess, client: httpx.Client, minute: float) -> dict[str, Any]:
    figures = collector.figures()
    metrics = collector.metrics()
    latest = latency(client, "/api/v1/machines/press/latest", {})
    page = latency(client, "/api/v1/readings", {"machine": "press", "tag": "strokes",
                                                "limit": 1000}, n=10)
    health = collector.health()
    return {
        "minute": round(minute, 1),
        "rss_mb": round(figures.rss_kb / 1024, 1),
        "fds": figures.fds,
        "sockets": figures.sockets,
        "threads": figures.threads,
        "tasks": int(metric(metrics, "collector_asyncio_tasks") or 0),
        "latest_p50_ms": latest[0], "latest_p95_ms": latest[1],
        "page_p50_ms": page[0], "page_p95_ms": page[1],
        "written": health["ledger"]["written"],
        "backlog": health["ledger"]["backlog"],
        "sources_connected": sum(1 for s in health["sources"] if s["connected"]),
    }


def verdict(samples: list[dict[str, Any]], warmup: int) -> list[str]:
    """What grew past its bound between the first and the last quarter of the run."""
    steady = samples[warmup:]
    if len(steady) < 4:
        return [f"only {len(steady)} samples after warm-up: run longer for a verdict"]
    quarter = max(1, len(steady) // 4)
    first, last = steady[:quarter], steady[-quarter:]

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    problems = []
    rss0, rss1 = med(first, "rss_mb"), med(last, "rss_mb")
    if rss1 - rss0 > max(RSS_GROWTH_MB, rss0 * RSS_GROWTH_SHARE):
        problems.append(f"RSS grew from {rss0:.1f} MB to {rss1:.1f} MB")
    for key, bound in (("fds", FDS_GROWTH), ("sockets", FDS_GROWTH),
                       ("threads", THREADS_GROWTH), ("tasks", TASKS_GROWTH)):
        a, b = med(first, key), med(last, key)
        if b - a > bound:
            problems.append(f"{key} grew from {a:.0f} to {b:.0f}")
    for key in ("latest_p95_ms", "page_p95_ms"):
        a, b = med(first, key), med(last, key)
        if b > a * LATENCY_FACTOR + LATENCY_SLACK_MS:
            problems.append(f"{key} grew from {a:.1f} to {b:.1f}")
    if samples[-1]["sources_connected"] != 3:
        problems.append(f"{3 - samples[-1]['sources_connected']} sources not connected at the end")
    return problems


async def soak(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="collector-soak-"))
    plant = await Plant(work, modbus_tags=args.modbus_tags, opcua_nodes=args.opcua_nodes,
                        mqtt_rate=args.mqtt_rate, tick=0.5).start()
    collector = CollectorProcess(work / "collector.yaml", work / "collector.log")
    (work / "collector.yaml").write_text(plant.config(
        f"sqlite:///{work}/ledger.db", work / "spool.db", collector.api_port,
        interval=args.interval, flush="500ms"))
    samples: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(collector.start)
        plant.start_publishing()
        began = time.monotonic()
        end = began + args.minutes * 60
        with httpx.Client(base_url=collector.url, timeout=30) as client:
            while True:
                await asyncio.sleep(min(args.every, max(0.0, end - time.monotonic())))
                row = await asyncio.to_thread(sample, collector, client,
                                              (time.monotonic() - began) / 60)
                samples.append(row)
                print(json.dumps(row) if args.json else
                      " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
                if time.monotonic() >= end - 1:
                    break
        exit_code = collector.stop()
    finally:
        collector.stop()
        await plant.stop()
    problems = verdict(samples, args.warmup)
    if exit_code != 0:
        problems.append(f"collector exited with {exit_code} on SIGTERM")
    if "Traceback" in collector.log_text():
        problems.append(f"a traceback in {collector.log}")
    summary = {"minutes": args.minutes, "samples": len(samples), "problems": problems,
               "first": samples[min(args.warmup, len(samples) - 1)] if samples else None,
               "last": samples[-1] if samples else None,
               "max_rss_mb": max((s["rss_mb"] for s in samples), default=None)}
    print(json.dumps(summary) if args.json else
          ("PASS" if not problems else "FAIL: " + "; ".join(problems)), flush=True)
    if args.samples is not None:
        args.samples.write_text(json.dumps({**summary, "samples": samples}, indent=1))
    if args.plot is not None and samples:
        title = (f"soak: {args.minutes:g} min, {args.modbus_tags} Modbus tags, "
                 f"{args.opcua_nodes} OPC UA nodes, {args.mqtt_rate:g} MQTT msg/s: "
                 + ("PASS" if not problems else "FAIL"))
        plot(samples, args.plot, title)
    return 1 if problems else 0


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    """RSS, the counts from /proc and the API latency over the run, as a PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: .venv/bin/pip install '.[bench]'")
    minutes = [s["minute"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(minutes, [s["rss_mb"] for s in samples], label="RSS of the collector (MB)")
    for key in ("fds", "sockets", "threads", "tasks"):
        axes[1].plot(minutes, [s[key] for s in samples], label=key.replace("fds", "open files"))
    for key, label in (("latest_p95_ms", "latest values p95 (ms)"),
                       ("page_p95_ms", "page of 1,000 readings p95 (ms)")):
        axes[2].plot(minutes, [s[key] for s in samples], label=label)
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    for ax in axes:
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
    axes[2].set_xlabel("minutes")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=240.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--warmup", type=int, default=2, help="samples before the baseline")
    parser.add_argument("--modbus-tags", type=int, default=200)
    parser.add_argument("--opcua-nodes", type=int, default=50)
    parser.add_argument("--mqtt-rate", type=float, default=50.0, help="QoS 1 messages/s")
    parser.add_argument("--interval", default="1s", help="poll/publishing interval")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--samples", type=Path, help="write the samples to this JSON file")
    parser.add_argument("--plot", type=Path, help="draw the samples into this PNG")
    parser.add_argument("--from", dest="source", type=Path,
                        help="with --plot: draw the samples of an earlier --samples file")
    args = parser.parse_args()
    if args.source is not None:
        if args.plot is None:
            parser.error("--from needs --plot")
        plot(json.loads(args.source.read_text())["samples"], args.plot,
             f"soak: {args.source.name}")
        return
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
