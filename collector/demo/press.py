"""Press 07: a retrofitted press behind a Modbus TCP I/O module and an SDM630-style meter.

The I/O module reads a current clamp on the main motor (4-20 mA, raw 0..10000), an oil
temperature probe, a photo-eye stroke counter (32-bit, low word first), the stack light and a
status word; the energy meter keeps float32 measurements in input registers at the SDM630's
addresses. Both are real pymodbus servers on loopback, written to as the press runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from dataclasses import dataclass, field
from typing import Any

from pymodbus import FramerType
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

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

COIL, DISCRETE, HOLDING, INPUT = 1, 2, 3, 4  # Modbus function codes of the four tables

# I/O module register map (0-based protocol addresses), as in config/demo.yaml
DI_GREEN, DI_YELLOW, DI_RED, DI_GUARD = 0, 1, 2, 3
IR_CURRENT, IR_OIL = 0, 1
HR_PARTS, HR_STATUS, HR_MODE, HR_FIRMWARE = 10, 20, 30, 100
COIL_HORN = 0
# SDM630 input registers (manual 30001 = address 0)
SDM_VOLTAGE, SDM_CURRENT, SDM_POWER_TOTAL, SDM_FREQUENCY, SDM_IMPORT = 0, 6, 52, 70, 72

FIRMWARE = "IO-8DI4AI v2.14"


def float32_words(value: float) -> list[int]:
    """A float32 as two registers, most significant word first (ABCD), as the SDM630 sends it."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


def uint32_words_cdab(value: int) -> list[int]:
    """A uint32 as two registers, low word first (CDAB), as many counter modules send it."""
    value &= 0xFFFFFFFF
    return [value & 0xFFFF, value >> 16]


def text_words(text: str, registers: int) -> list[int]:
    """Text as registers, two characters each, high byte first, padded with NULs."""
    raw = text.encode("ascii")[: registers * 2].ljust(registers * 2, b"\0")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]


@dataclass
class PressModel:
    """The physics of the press: motor current, oil temperature, strokes, energy."""

    rng: random.Random
    behaviour: Behaviour
    current: float = 0.0  # A, main motor
    oil_temp: float = 34.0  # degC
    parts: int = 0
    energy_kwh: float = 0.0
    cycle_time: float = 3.2  # s per stroke while running
    next_stroke: float = 0.0
    stroke_until: float = 0.0
    volts: list[float] = field(default_factory=lambda: [230.0, 231.0, 229.5])
    frequency: float = 50.0
    guard_closed: bool = True

    def tick(self, now: float, dt: float) -> None:
        before = self.behaviour.state
        state = self.behaviour.step(now)
        if state != before:  # at a stop the setter often opens the guard; it is shut to run
            self.guard_closed = state != STOPPED or self.rng.random() < 0.5
        if state == RUNNING and now >= self.next_stroke:
            self.parts += 1
            self.stroke_until = now + 0.45
            self.next_stroke = now + noisy(self.rng, self.cycle_time, 0.15)
        if state != RUNNING:
            self.next_stroke = max(self.next_stroke, now + 1.0)
        stroking = now < self.stroke_until
        target = {RUNNING: 27.0 if stroking else 13.5, IDLE: 5.8, STOPPED: 0.0}[state]
        self.current = max(0.0, approach(self.current, target, 0.15 if stroking else 0.6, dt))
        if state != STOPPED:
            self.current = max(0.0, noisy(self.rng, self.current, 0.25))
        oil_target = {RUNNING: 52.0, IDLE: 44.0, STOPPED: 24.0}[state]
        self.oil_temp = approach(self.oil_temp, oil_target, 240.0, dt)
        self.volts = [approach(v, 230.0, 30.0, dt) + self.rng.gauss(0, 0.35) for v in self.volts]
        self.frequency = approach(self.frequency, 50.0, 20.0, dt) + self.rng.gauss(0, 0.004)
        self.energy_kwh += self.power_w() * dt / 3.6e6

    def phase_currents(self) -> list[float]:
        aux = 0.35  # controls, fans and lights of the press
        return [self.current * k + aux for k in (1.0, 0.97, 1.02)]

    def power_w(self) -> float:
        pf = 0.84 if self.current > 8 else 0.38 if self.current > 0.5 else 1.0
        return sum(v * i * pf for v, i in zip(self.volts, self.phase_currents(), strict=True))

    def lights(self) -> tuple[bool, bool, bool]:
        state = self.behaviour.state
        return state == RUNNING, state == IDLE, state == STOPPED


def _device(bits: int = 16, registers: int = 128) -> SimDevice:
    def regs() -> list[SimData]:
        return [SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)]

    def flags() -> list[SimData]:
        return [SimData(0, count=bits, values=False, datatype=DataType.BITS)]

    return SimDevice(1, simdata=(flags(), flags(), regs(), regs()))


class _Units(SimCore):
    """The devices of one simulated server, answering another unit id as a real gateway
    does (exception 0x0B, gateway target did not respond), not with a device failure."""

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> Any:
        if device_id not in self.devices:
            raise NoSuchIdException(f"unit {device_id}")
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: Any) -> Any:
        if device_id not in self.devices:
            raise NoSuchIdException(f"unit {device_id}")
        return await super().async_setValues(device_id, func_code, address, values)


def modbus_server(device: SimDevice, port: int) -> ModbusTcpServer:
    """A simulated Modbus TCP device on loopback that knows one unit id."""
    server = ModbusTcpServer([device], address=("127.0.0.1", port), framer=FramerType.SOCKET)
    server.context = _Units([device])
    return server


class PressSimulator:
    """Both Modbus servers of the press, kept up to date by `run()`."""

    def __init__(self, io_port: int, meter_port: int, rng: random.Random, pace: float = 1.0,
                 memory: CounterMemory | None = None):
        self.io_port, self.meter_port = io_port, meter_port
        self.memory = memory or CounterMemory(None)
        behaviour = standard_behaviour(rng, pace)
        parts = int(self.memory.get("press_parts", rng.randint(20_000, 60_000)))
        energy = self.memory.get("press_energy_kwh", rng.uniform(8_000, 20_000))
        self.model = PressModel(rng, behaviour, parts=parts, energy_kwh=energy)
        self.io = modbus_server(_device(), io_port)
        self.meter = modbus_server(_device(registers=400), meter_port)

    async def start(self) -> None:
        await self.io.serve_forever(background=True)
        await self.meter.serve_forever(background=True)
        await self.io.async_setValues(1, HOLDING, HR_FIRMWARE, text_words(FIRMWARE, 8))
        await self.io.async_setValues(1, HOLDING, HR_MODE, [0x0102])  # high: spare, low: mode 2
        loop = asyncio.get_running_loop()
        self.model.behaviour.start(loop.time(), RUNNING)
        await self.publish()

    async def stop(self) -> None:
        for server in (self.io, self.meter):
            await server.shutdown()

    async def run(self, period: float = 0.1) -> None:
        await tick_forever(self.model, self.publish, period)

    async def publish(self) -> None:
        """Write the model into the registers the collector reads."""
        m = self.model
        self.memory.remember(press_parts=m.parts, press_energy_kwh=m.energy_kwh)
        green, yellow, red = m.lights()
        guard = m.guard_closed
        io, meter = self.io, self.meter
        await io.async_setValues(1, DISCRETE, DI_GREEN, [green, yellow, red, guard])
        raw_current = round(min(m.current, 50.0) / 50.0 * 10_000)
        raw_oil = round((m.oil_temp + 20.0) / 150.0 * 10_000)
        await io.async_setValues(1, INPUT, IR_CURRENT, [raw_current, raw_oil])
        await io.async_setValues(1, HOLDING, HR_PARTS, uint32_words_cdab(m.parts))
        # status word: bit 0 module fault (never), bit 3 guard closed, bit 15 counter enabled
        await io.async_setValues(1, HOLDING, HR_STATUS, [(guard << 3) | (1 << 15)])
        await io.async_setValues(1, COIL, COIL_HORN, [red and not guard])
        currents = m.phase_currents()
        await meter.async_setValues(1, INPUT, SDM_VOLTAGE, sum(map(float32_words, m.volts), []))
        await meter.async_setValues(1, INPUT, SDM_CURRENT, sum(map(float32_words, currents), []))
        await meter.async_setValues(1, INPUT, SDM_POWER_TOTAL, float32_words(m.power_w()))
        await meter.async_setValues(1, INPUT, SDM_FREQUENCY, float32_words(m.frequency))
        await meter.async_setValues(1, INPUT, SDM_IMPORT, float32_words(m.energy_kwh))
