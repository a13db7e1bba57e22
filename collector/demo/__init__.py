"""`collector demo`: simulated retrofitted machines on loopback, a collector reading them over
the real protocols into a SQLite ledger, and the status page.

Everything runs in this one process: the simulators are asyncio tasks next to the collector's
sources, so Ctrl-C (or `--seconds`) stops it all, flushing the ledger, with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
from pathlib import Path

from collector.config import CollectorConfig, ConfigError, load_config
from collector.runtime import EventLoopChoiceError, run_service

from .plant import DemoError, Plant, can_bind, find_template, free_port

log = logging.getLogger("collector.demo")

__all__ = ["run_demo"]


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, SIGTERM or `args.seconds`; exit code 0, or 1 with one line."""
    try:
        plant, config, effective = prepare(Path(args.data), int(args.port))
        return run_service(_serve(plant, config, effective, args.seconds))
    except (DemoError, EventLoopChoiceError) as exc:
        print(f"collector demo: {exc}", file=sys.stderr)
        return 1


def prepare(data: Path, port: int) -> tuple[Plant, CollectorConfig, Path]:
    """Choose the ports, write `<data>/demo.yaml` and load it as the collector would."""
    _quiet_libraries()
    template = find_template()
    if port == 0:
        port = free_port()
    elif not can_bind(port):
        raise DemoError(f"port {port} is in use (another collector or demo?); stop it, or "
                        f"choose another port with --port")
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    plant = Plant(data, port)
    plant.choose_ports()
    effective = data / "demo.yaml"
    effective.write_text(plant.config_text(template), encoding="utf-8")
    try:
        return plant, load_config(effective), effective
    except ConfigError as exc:
        raise DemoError(f"{effective}: {exc.problems[0]}") from None


async def _serve(plant: Plant, config: CollectorConfig, effective: Path,
                 seconds: float | None) -> int:
    from api.server import ApiServer
    from collector.runtime import Runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await plant.start(random.Random())
    try:
        try:
            runtime = Runtime(config, api=ApiServer)
            await runtime.start()
        except OSError as exc:
            raise DemoError(str(exc)) from None
        try:
            _announce(plant, effective, plant.api_port)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
            print("demo: stopping (flushing readings to the ledger)", flush=True)
        finally:
            await runtime.stop()
    finally:
        await plant.stop()
    return 0


def _announce(plant: Plant, effective: Path, port: int) -> None:
    lines = [
        "Retrofit collector demo: three simulated machines on this computer",
        *(f"  {line}" for line in plant.describe()),
        f"  config {effective}",
        f"  ledger {plant.data / 'ledger.db'} (SQLite)",
        "",
        f"Status page: http://127.0.0.1:{port}/",
        f"REST API:    http://127.0.0.1:{port}/api/v1/machines   (docs at /docs)",
        "Stop with Ctrl-C.",
    ]
    print("\n".join(lines), flush=True)
    if plant.mqtt_kind == "none":
        log.warning("Compressor 01 has no MQTT broker to talk to: its card stays red until one "
                    "runs on 127.0.0.1:1883 (apt install mosquitto, or pip install amqtt)")


def _quiet_libraries() -> None:
    """The simulators' libraries chat about every connection; the demo's own log is enough."""
    for name in ("asyncua", "amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # a scan with another unit id is answered 0x0B, as a gateway does; pymodbus logs each
    # such request as an error, and the collector reports its own client's failures itself
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
