"""MQTT benchmark: messages/s from a real Mosquitto through the full Runtime into SQLite.

A Mosquitto of its own (free port, temp dir) and a publisher process that feeds JSON payloads
`{"v": i, "ts": <publish time, epoch µs>}` round-robin to `--topics` mosquitto_pub processes
as fast as they take them (or at `--rate`). The collector runs in this process: adapter, pipeline, SQLite ledger. Reported:
messages/s into the ledger, end-to-end latency (publish -> committed) p50/p99, collector CPU
share of one core, and whether every message arrived.

    .venv/bin/python bench/mqtt.py [--count 200000] [--qos 1] [--version 3.1.1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from collector.runtime import run_service  # noqa: E402
from tests.kit.ports import free_port, port_open  # noqa: E402

PUBLISHER = r"""
import subprocess, sys, time
port, prefix, topics, count, qos, rate = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                          int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
# mosquitto_pub (C) publishes each stdin line; this process only stamps and writes the lines
pubs = [subprocess.Popen(["mosquitto_pub", "-p", str(port), "-q", str(qos), "-M", "1000",
                          "-l", "-t", f"{prefix}/{k}"], stdin=subprocess.PIPE, bufsize=0)
        for k in range(topics)]
start = time.monotonic()
for i in range(count):
    pubs[i % topics].stdin.write(b'{"v": %d, "ts": %d}\n' % (i, time.time_ns() // 1000))
    if rate > 0:
        ahead = start + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
for p in pubs:
    p.stdin.close()
for p in pubs:
    p.wait()
print(f"{count / (time.monotonic() - start):.0f}")
"""


# Preloading: mosquitto_pub -l drops what it still holds when its stdin ends, which at full
# speed against an idle broker is most of the messages (seen: 69,000 of 200,000 arrive, with
# mosquitto_sub as the subscriber too). This publisher waits for the broker's PUBACK of every
# message before it exits, so the broker really holds all of them when the collector comes.
PRELOADER = r"""
import sys, time
import paho.mqtt.client as mqtt
port, prefix, topics, count, qos = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                    int(sys.argv[4]), int(sys.argv[5]))
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-preloader")
client.max_inflight_messages_set(1000)
client.connect("127.0.0.1", port)
client.loop_start()
while not client.is_connected():
    time.sleep(0.01)
start = time.monotonic()
for first in range(0, count, 1000):
    infos = [client.publish(f"{prefix}/{i % topics}", b'{"v": %d, "ts": %d}' % (i, time.time_ns() // 1000),
                            qos=qos) for i in range(first, min(first + 1000, count))]
    for info in infos:
        info.wait_for_publish(120)
print(f"{count / (time.monotonic() - start):.0f}")
client.loop_stop()
client.disconnect()
"""


def start_broker(folder: Path, inflight: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
                    f"persistence false\nmax_queued_messages 0\nmax_inflight_messages {inflight}\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if port_open(port):
            return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(args: argparse.Namespace, folder: Path, port: int) -> dict[str, object]:
    import yaml

    from adapters.base import registry
    from collector.config import parse_config
    from collector.runtime import Runtime

    registry()  # the adapters' source models, for parse_config
    prefix = "bench/line1"
    config = parse_config(yaml.safe_dump({
        "ledger": {"url": f"sqlite:///{folder}/ledger.db"},
        "spool": {"path": str(folder / "spool.db")},
        "api": {"enabled": False},
        "machines": [{"id": "bench", "sources": [{
            "id": "mqtt", "protocol": "mqtt", "broker": f"mqtt://127.0.0.1:{port}",
            "qos": args.qos, "version": args.version, "client_id": "bench-collector",
            "max_inflight": args.max_inflight,
            "tags": [{"name": f"t{k}", "topic": f"{prefix}/{k}", "json": "v",
                      "timestamp": "ts", "timestamp_unit": "us"} for k in range(args.topics)],
        }]}],
    }))
    latencies: list[float] = []
    committed = 0
    last_commit = 0.0
    publish_rate = 0.0

    async def publish() -> float:
        script = PRELOADER if args.preload else PUBLISHER
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(port), prefix, str(args.topics), str(args.count),
            str(args.qos), str(args.rate), stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return float(out.decode().strip() or 0)

    if args.preload:  # the session exists, the collector is away, the broker queues everything
        async with Runtime(config) as rt:
            for _ in range(200):
                if rt.health_of("bench", "mqtt").connected:
                    break
                await asyncio.sleep(0.05)
        publish_rate = await publish()

    async with Runtime(config) as rt:
        write = rt.ledger.write

        async def timed_write(batch):  # type: ignore[no-untyped-def]
            nonlocal committed, last_commit
            result = await write(batch)
            now = time.time_ns() // 1000
            latencies.extend((now - r.ts) / 1000 for r in batch[:: max(1, len(batch) // 200)])
            committed += len(batch)
            last_commit = time.monotonic()
            return result

        rt.ledger.write = timed_write  # type: ignore[method-assign]
        health = rt.health_of("bench", "mqtt")
        for _ in range(200):
            if health.connected:
                break
            await asyncio.sleep(0.05)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        publisher = None if args.preload else asyncio.create_task(publish())
        deadline = started + args.timeout
        tick = time.monotonic()
        while committed < args.count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if args.trace and time.monotonic() - tick >= 0.5:
                tick = time.monotonic()
                print(f"t={tick - started:5.1f}s received={health.reads} committed={committed} "
                      f"inflight={health.extra.get('inflight')} queued={rt.pipeline.queued}",
                      file=sys.stderr)
        wall = (last_commit or time.monotonic()) - started
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        if publisher is not None:
            publish_rate = await publisher
        extra = dict(health.extra)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "messages": args.count,
        "stored": committed,
        "complete": committed == args.count,
        "qos": args.qos,
        "version": args.version,
        "topics": args.topics,
        "mode": "preloaded broker (drain)" if args.preload else "live publisher",
        "publisher_msgs_per_s": round(publish_rate),
        "msgs_per_s": round(committed / wall) if wall > 0 else None,
        "latency_ms_p50": None if args.preload else round(percentile(latencies, 50), 1),
        "latency_ms_p99": None if args.preload else round(percentile(latencies, 99), 1),
        "cpu_us_per_msg": round(cpu / committed * 1e6, 1) if committed else None,
        "collector_cpu_share": round(cpu / wall, 2) if wall > 0 else None,
        "bad_payloads": extra.get("bad_payloads_total", 0),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--topics", type=int, default=2, help="one mosquitto_pub process each")
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    parser.add_argument("--version", choices=("3.1.1", "5"), default="3.1.1")
    parser.add_argument("--rate", type=float, default=0, help="publish rate limit, msgs/s (0 = flat out)")
    parser.add_argument("--max-inflight", type=int, default=40_000,
                        help="the source's max_inflight (QoS 1: unacknowledged messages at once)")
    parser.add_argument("--broker-inflight", type=int, default=40_000,
                        help="Mosquitto's max_inflight_messages (its window for MQTT 3.1.1)")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--preload", action="store_true",
                        help="publish everything first (collector away), then time the drain")
    parser.add_argument("--trace", action="store_true", help="print progress every 0.5 s")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for the collector (GIL hand-over, seconds)")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        folder = Path(tmp)
        broker, port = start_broker(folder, args.broker_inflight)
        try:
            result = run_service(run(args, folder, port))  # the loop `collector run` uses
        finally:
            broker.send_signal(signal.SIGTERM)
            try:
                broker.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(broker.pid, signal.SIGKILL)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
        target = 20_000
        rate = result["msgs_per_s"] or 0
        print(f"{'target':>22}: >= {target} msgs/s -> {'met' if rate >= target else 'MISSED'}")
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
