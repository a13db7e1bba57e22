"""The demo plant: picks the simulators' ports, starts them, and writes the collector's config.

The config is `config/demo.yaml` with the addresses of this run filled in, written to
`<data>/demo.yaml` so a technician can open it and see exactly what the collector reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .compressor import SHARED_MQTT_PORT, CompressorSimulator, EmbeddedBroker, port_answers
from .lathe import LatheSimulator
from .memory import CounterMemory
from .press import PressSimulator

log = logging.getLogger("collector.demo")

TEMPLATE = "config/demo.yaml"
PORTS_ENV = "COLLECTOR_DEMO_PORTS"  # "free": every simulator on a port the OS picks
MQTT_ENV = "COLLECTOR_DEMO_MQTT"  # auto (default) | shared | embedded
TOPIC_ROOT = "plant1/utilities/comp01"


class DemoError(Exception):
    """Something the person starting the demo can fix; the message says what."""


def find_template() -> Path:
    """config/demo.yaml of the source tree this package runs from, else of the current folder."""
    here = Path(__file__).resolve().parents[2] / TEMPLATE
    for path in (here, Path.cwd() / TEMPLATE):
        if path.is_file():
            return path
    raise DemoError(f"{TEMPLATE} not found next to the collector package ({here}) nor in the "
                    "current folder; run the demo from the project folder")


def can_bind(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_port(default: int, taken: set[int]) -> int:
    """The default port when it is free (and not handed out already), else one the OS picks."""
    fixed = os.environ.get(PORTS_ENV, "").strip().lower() != "free"
    port = default if fixed and default not in taken and can_bind(default) else free_port()
    while port in taken:
        port = free_port()
    taken.add(port)
    return port


@dataclass
class Plant:
    """The simulators of one demo run and where they listen."""

    data: Path
    api_port: int
    io_port: int = 0
    meter_port: int = 0
    opcua_port: int = 0
    mqtt_port: int = SHARED_MQTT_PORT
    mqtt_kind: str = "shared"  # shared (a Mosquitto that was running) | embedded | none
    topic_root: str = TOPIC_ROOT
    broker: EmbeddedBroker | None = None
    sims: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def choose_ports(self) -> None:
        taken = {self.api_port}
        self.io_port = pick_port(5020, taken)
        self.meter_port = pick_port(5021, taken)
        self.opcua_port = pick_port(4840, taken)
        wanted = os.environ.get(MQTT_ENV, "auto").strip().lower()
        if wanted not in ("auto", "shared", "embedded"):
            raise DemoError(f"{MQTT_ENV}={wanted!r}: use auto, shared or embedded")
        if wanted != "embedded" and port_answers(SHARED_MQTT_PORT):
            self.mqtt_kind, self.mqtt_port = "shared", SHARED_MQTT_PORT
            # other collectors may use this broker too: keep the demo's topics to itself
            self.topic_root = f"demo-{self.api_port}/{TOPIC_ROOT}"
        elif wanted != "shared" and EmbeddedBroker.available():
            self.mqtt_kind, self.mqtt_port = "embedded", pick_port(SHARED_MQTT_PORT, taken)
        else:
            self.mqtt_kind, self.mqtt_port = "none", SHARED_MQTT_PORT

    def config_text(self, template: Path) -> str:
        """The template with this run's ledger, spool, API port and device addresses."""
        data = yaml.safe_load(template.read_text(encoding="utf-8"))
        data["ledger"]["url"] = f"sqlite:///{self.data / 'ledger.db'}"
        data["spool"]["path"] = str(self.data / "spool.db")
        data["api"]["port"] = self.api_port
        for machine in data["machines"]:
            for source in machine["sources"]:
                where = (machine["id"], source["id"])
                if where == ("press07", "io"):
                    source["port"] = self.io_port
                elif where == ("press07", "energy"):
                    source["port"] = self.meter_port
                elif source["protocol"] == "opcua":
                    source["endpoint"] = f"opc.tcp://127.0.0.1:{self.opcua_port}"
                elif source["protocol"] == "mqtt":
                    self._mqtt_source(source)
        header = (f"# Written by `collector demo` from {template} with the addresses of this run;\n"
                  "# rewritten on every start. Copy config/demo.yaml (it has the comments) to "
                  "make your own.\n")
        return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    def _mqtt_source(self, source: dict[str, Any]) -> None:
        source["broker"] = f"mqtt://127.0.0.1:{self.mqtt_port}"
        if self.mqtt_kind == "shared":
            # a broker shared with others: a session of our own that it forgets when we leave
            source["client_id"] = f"{source.get('client_id', 'collector-demo')}-{self.api_port}"
            source["clean_session"] = True
            for tag in source["tags"]:
                tag["topic"] = tag["topic"].replace(TOPIC_ROOT, self.topic_root, 1)

    def describe(self) -> list[str]:
        mqtt = {"shared": f"MQTT broker 127.0.0.1:{self.mqtt_port} (the local Mosquitto), "
                          f"topics {self.topic_root}/#",
                "embedded": f"MQTT broker 127.0.0.1:{self.mqtt_port} (embedded)",
                "none": "no MQTT broker: start Mosquitto on 127.0.0.1:1883 or pip install "
                        "amqtt, then restart the demo"}[self.mqtt_kind]
        return [
            f"Press 07      Modbus TCP I/O module 127.0.0.1:{self.io_port}, "
            f"SDM630 energy meter 127.0.0.1:{self.meter_port}",
            f"Lathe 03      OPC UA server opc.tcp://127.0.0.1:{self.opcua_port}",
            f"Compressor 01 {mqtt}",
        ]

    async def start(self, rng: random.Random) -> None:
        """Start every simulator; undone by `stop()` even when one fails to start."""
        try:
            memory = CounterMemory(self.data / "simulators.json")
            press = PressSimulator(self.io_port, self.meter_port, rng, memory=memory)
            self.sims.append(press)
            await press.start()
            lathe = LatheSimulator(self.opcua_port, rng, memory=memory)
            self.sims.append(lathe)
            await lathe.start()
            if self.mqtt_kind == "embedded":
                self.broker = EmbeddedBroker(self.mqtt_port)
                await self.broker.start()
            if self.mqtt_kind != "none":
                compressor = CompressorSimulator(self.mqtt_port, self.topic_root, rng)
                self.sims.append(compressor)
                await compressor.start()
        except OSError as exc:
            await self.stop()
            raise DemoError(f"a simulator could not start: {exc}") from None
        for sim in self.sims:
            self.tasks.append(asyncio.create_task(sim.run(), name=f"demo {type(sim).__name__}"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        for sim in reversed(self.sims):
            with contextlib.suppress(Exception):
                await sim.stop()
        self.sims.clear()
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None
