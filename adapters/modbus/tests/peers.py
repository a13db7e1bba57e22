"""Real peers for the tests: pymodbus' own server in-process, a silent TCP device, and
socat pty pairs for RTU. Everything listens on 127.0.0.1 on a port the OS picked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.conftest import free_port, need_program  # noqa: F401  (free_port is shared by this folder's tests)

FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
Ranges = Sequence[tuple[int, int]]  # (start, count) of valid addresses




def sim_device(unit: int, registers: Ranges = ((0, 300),), bits: Ranges = ((0, 64),),
               inputs: Ranges | None = None) -> SimDevice:
    """A device whose addresses outside the given ranges answer 'illegal data address'."""
    def regs(ranges: Ranges) -> list[SimData]:
        return [SimData(a, count=n, values=0, datatype=DataType.REGISTERS) for a, n in ranges]

    def bitlist(ranges: Ranges) -> list[SimData]:
        return [SimData(a, count=n, values=False, datatype=DataType.BITS) for a, n in ranges]

    return SimDevice(unit, simdata=(bitlist(bits), bitlist(bits), regs(registers),
                                    regs(inputs if inputs is not None else registers)))


class Device:
    """A pymodbus server with one or more units; `set()` writes what the device would hold."""

    def __init__(self, devices: list[SimDevice], port: int | None = None,
                 framer: FramerType = FramerType.SOCKET, serial: str | None = None):
        self.devices = devices
        self.port = port or free_port()
        self.framer = framer
        self.serial = serial
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.memory: list[tuple[int, str, int, list]] = []

    async def start(self) -> Device:
        if self.serial:
            self.server = ModbusSerialServer(self.devices, port=self.serial, baudrate=115200,
                                             framer=self.framer)
        else:
            self.server = ModbusTcpServer(self.devices, address=("127.0.0.1", self.port),
                                          framer=self.framer)
        await self.server.serve_forever(background=True)
        for unit, kind, address, values in self.memory:  # a restarted device keeps its data
            await self._write(unit, kind, address, values)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def set(self, kind: str, address: int, values: list, unit: int = 1) -> None:
        self.memory.append((unit, kind, address, list(values)))
        if self.server is not None:
            await self._write(unit, kind, address, values)

    async def _write(self, unit: int, kind: str, address: int, values: list) -> None:
        assert self.server is not None
        await self.server.async_setValues(unit, FUNCTION[kind], address, list(values))


class SilentDevice:
    """Accepts TCP connections and never answers: a device that hangs."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> SilentDevice:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            while await reader.read(1024):
                pass

        self.server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()


class PtyPair:
    """Two linked serial devices made by socat; stopped by its PID."""

    def __init__(self, folder: Path):
        self.a = str(folder / "ttyA")
        self.b = str(folder / "ttyB")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PtyPair:
        self.process = subprocess.Popen(
            [need_program("socat", "socat"), f"pty,raw,echo=0,link={self.a}",
             f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(self.a) and os.path.exists(self.b):
                return self
            time.sleep(0.025)
        self.stop()
        raise RuntimeError("socat did not create the pty pair")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
