"""Modbus peers: pymodbus' own server in-process (TCP or serial), a device that never answers,
socat pty pairs for RTU, and the memory a case's device.yaml describes, encoded by pymodbus.

The memory is built independently of our codec: pymodbus' `convert_to_registers` gives the
big-endian (ABCD) words and the other byte orders are made here by plain word reversal and
byte swaps, so a symmetric bug in our codec's encoder and decoder cannot hide.
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .ports import free_port
from .programs import need_program

FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
KINDS = tuple(FUNCTION)
Ranges = Sequence[tuple[int, int]]  # (start, count) of valid addresses
Memory = list[tuple[str, int, list[Any]]]  # (register kind, address, words or bits)


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
        self.memory: list[tuple[int, str, int, list[Any]]] = []

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

    async def __aenter__(self) -> Device:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def set(self, kind: str, address: int, values: list[Any], unit: int = 1) -> None:
        self.memory.append((unit, kind, address, list(values)))
        if self.server is not None:
            await self._write(unit, kind, address, values)

    async def load(self, memory: Memory, unit: int = 1) -> None:
        """Write a whole memory (as `memory_of` builds it) into unit `unit`."""
        for kind, address, data in memory:
            await self.set(kind, address, data, unit=unit)

    async def _write(self, unit: int, kind: str, address: int, values: list[Any]) -> None:
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


# --- the memory a device.yaml describes ------------------------------------------------------

_T = AsyncModbusTcpClient.DATATYPE
_TYPES = {"int16": _T.INT16, "uint16": _T.UINT16, "int32": _T.INT32, "uint32": _T.UINT32,
          "float32": _T.FLOAT32, "int64": _T.INT64, "uint64": _T.UINT64,
          "float64": _T.FLOAT64, "string": _T.STRING}


def f32(x: float) -> float:
    """x as a float32 holds it."""
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def reorder(words: list[int], order: str) -> list[int]:
    """Big-endian words put in `order` (ABCD, CDAB, BADC, DCBA) by plain swaps."""
    if order in ("CDAB", "DCBA"):
        words = words[::-1]
    if order in ("BADC", "DCBA"):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def encode(value: object, datatype: str, order: str = "ABCD") -> list[int]:
    """`value` as the registers of `datatype`, encoded by pymodbus (float16 by `struct`)."""
    if datatype == "float16":
        words = [int(struct.unpack(">H", struct.pack(">e", value))[0])]
    else:
        words = AsyncModbusTcpClient.convert_to_registers(value, _TYPES[datatype])  # type: ignore[arg-type]
    return reorder(list(words), order)


def memory_of(device: Mapping[str, Any]) -> Memory:
    """The writes that give a device the memory `device` describes: per register kind a list
    of `{address, words: [...]}`, `{address, bits: [...]}` or `{address, type, value, order,
    pad}` (a value encoded by pymodbus, then `pad` zero registers)."""
    memory: Memory = []
    for kind in KINDS:
        for entry in device.get(kind, []):
            if "bits" in entry:
                data: list[Any] = [bool(b) for b in entry["bits"]]
            elif "words" in entry:
                data = [int(w) for w in entry["words"]]
            else:
                value = entry["value"]
                if entry["type"] in ("float16", "float32", "float64"):
                    value = float(value)  # YAML spells some as integers
                    if math.isnan(value):  # PyYAML's .nan has the sign bit set
                        value = math.nan
                data = encode(value, entry["type"], entry.get("order", "ABCD"))
                data += [0] * int(entry.get("pad", 0))
            memory.append((kind, int(entry["address"]), data))
    return memory
