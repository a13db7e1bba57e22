"""Lathe 03: a CNC lathe whose retrofit kit runs a small OPC UA server.

An asyncua server on loopback with one object `Lathe03` holding spindle speed and load, a
spindle temperature, the part counter, the control's mode text and the loaded program. The
node ids use the different forms a technician meets (string, numeric, browse path, namespace
URI), as `config/demo.yaml` reads them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from asyncua import Server, ua

from .behaviour import (
    IDLE,
    RUNNING,
    STOPPED,
    Behaviour,
    approach,
    noisy,
    standard_behaviour,
    tick_forever,
)
from .memory import CounterMemory

log = logging.getLogger("collector.demo")

NAMESPACE = "urn:retrofit:demo:lathe03"
PROGRAMS = ("O1204 FLANGE-80", "O1310 SHAFT-22", "O0877 BUSHING-40")
# one part: (operation, spindle rpm, load %, seconds)
CYCLE = (("roughing", 1800.0, 58.0, 7.0), ("finishing", 2600.0, 31.0, 5.0),
         ("tool change", 0.0, 0.0, 1.5))
MODE_TEXT = {RUNNING: "AUTO", IDLE: "READY", STOPPED: "STOP"}


@dataclass
class LatheModel:
    """Spindle, temperature and part counter of the lathe."""

    rng: random.Random
    behaviour: Behaviour
    speed: float = 0.0
    load: float = 0.0
    temperature: float = 29.0
    parts: int = 0
    program: str = PROGRAMS[0]
    step: int = 0
    step_until: float = 0.0

    def tick(self, now: float, dt: float) -> None:
        before = self.behaviour.state
        state = self.behaviour.step(now)
        if before == STOPPED and state != STOPPED and self.rng.random() < 0.4:
            self.program = self.rng.choice(PROGRAMS)  # a job change after a stop
        rpm, load = 0.0, 0.0
        if state == RUNNING:
            if now >= self.step_until:
                self.step = (self.step + 1) % len(CYCLE)
                if self.step == 0:
                    self.parts += 1
                self.step_until = now + noisy(self.rng, CYCLE[self.step][3], 0.2)
            _, rpm, load, _ = CYCLE[self.step]
        else:
            self.step, self.step_until = len(CYCLE) - 1, now
        self.speed = max(0.0, approach(self.speed, rpm, 0.7, dt))
        if self.speed > 1:
            self.speed = noisy(self.rng, self.speed, 2.0)
        self.load = max(0.0, noisy(self.rng, approach(self.load, load, 0.5, dt), 0.8 if load else 0))
        target = {RUNNING: 41.0, IDLE: 31.0, STOPPED: 24.0}[state]
        self.temperature = noisy(self.rng, approach(self.temperature, target, 200.0, dt), 0.03)

    def values(self) -> dict[str, Any]:
        return {"SpindleSpeed": round(self.speed, 1), "SpindleLoad": round(self.load, 1),
                "SpindleTemperature": round(self.temperature, 2), "PartCount": self.parts,
                "Mode": MODE_TEXT[self.behaviour.state], "Program": self.program}


# browse name -> (node id identifier, variant type)
VARIABLES: dict[str, tuple[str | int, ua.VariantType]] = {
    "SpindleSpeed": ("Lathe03.SpindleSpeed", ua.VariantType.Double),
    "SpindleLoad": ("Lathe03.SpindleLoad", ua.VariantType.Float),
    "SpindleTemperature": ("Lathe03.SpindleTemperature", ua.VariantType.Float),
    "PartCount": (1001, ua.VariantType.UInt32),
    "Mode": ("Lathe03.Mode", ua.VariantType.String),
    "Program": ("Lathe03.Program", ua.VariantType.String),
}


def node_id(ident: str | int, namespace: int) -> ua.NodeId:
    """`ns=2;s=Lathe03.Mode` or `ns=2;i=1001`, the forms the config reads."""
    kind = "i" if isinstance(ident, int) else "s"
    return ua.NodeId.from_string(f"ns={namespace};{kind}={ident}")


class LatheSimulator:
    """The lathe's OPC UA server, its variables kept up to date by `run()`."""

    def __init__(self, port: int, rng: random.Random, pace: float = 1.0,
                 memory: CounterMemory | None = None):
        self.port = port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}"
        self.memory = memory or CounterMemory(None)
        parts = int(self.memory.get("lathe_parts", rng.randint(1_000, 9_000)))
        self.model = LatheModel(rng, standard_behaviour(rng, pace), parts=parts)
        self.server = Server()
        self.nodes: dict[str, ua.NodeId] = {}
        self.written: dict[str, Any] = {}

    async def start(self) -> None:
        server = self.server
        await server.init()
        server.disable_clock()  # nobody reads the server clock; saves a wake-up per second
        server.set_endpoint(self.endpoint)
        server.set_server_name("Lathe 03 retrofit kit (demo)")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE)
        lathe = await server.nodes.objects.add_object(node_id("Lathe03", idx),
                                                      ua.QualifiedName("Lathe03", idx))
        values = self.model.values()
        for name, (ident, vtype) in VARIABLES.items():
            node = await lathe.add_variable(node_id(ident, idx), ua.QualifiedName(name, idx),
                                            ua.Variant(values[name], vtype))
            self.nodes[name] = node.nodeid
        await server.start()
        self.model.behaviour.start(asyncio.get_running_loop().time(), RUNNING)

    async def stop(self) -> None:
        await self.server.stop()

    async def run(self, period: float = 0.25) -> None:
        await tick_forever(self.model, self.publish, period)

    async def publish(self) -> None:
        """Write the variables that changed, stamped with the time they changed."""
        stamp = cast(ua.DateTime, datetime.now(UTC))
        self.memory.remember(lathe_parts=self.model.parts)
        for name, value in self.model.values().items():
            if self.written.get(name) == value:
                continue
            self.written[name] = value
            variant = ua.Variant(value, VARIABLES[name][1])
            await self.server.write_attribute_value(
                self.nodes[name], ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=stamp))
