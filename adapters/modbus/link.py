"""One Modbus connection, its reconnect backoff, and sharing of a bus between sources.

A serial port (RS-485 bus) or a serial gateway (RTU over TCP) carries several devices, often
belonging to different machines, so every source naming the same port shares one `Link`:
pymodbus serialises the requests on it, one at a time, as the bus requires. A plain Modbus
TCP source gets a connection of its own, so a dead device never waits behind another.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from .config import ModbusSourceConfig

# pymodbus logs every timeout and refused connection itself; the adapter reports them through
# health instead, so its own log stays quiet unless someone configured it on purpose
if logging.getLogger("pymodbus").level == logging.NOTSET:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_FRAMERS = {"tcp": FramerType.SOCKET, "rtu": FramerType.RTU, "ascii": FramerType.ASCII}


def describe(source: ModbusSourceConfig) -> str:
    """Where a source talks to, for messages: `127.0.0.1:502` or `/dev/ttyUSB0 9600 8N1`."""
    if source.serial:
        return (f"{source.serial} {source.baudrate} "
                f"{source.bytesize}{source.parity}{source.stopbits}")
    via = "" if source.transport == "tcp" else f" ({source.transport} over TCP)"
    return f"{source.host}:{source.port}{via}"


class GarbledAnswer(ModbusIOException):
    """The device answered with a frame that cannot be decoded (a byte count that does not
    match the data, a length that does not fit the function)."""


def make_client(source: ModbusSourceConfig) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    """A pymodbus client without its own reconnect task (reconnect_delay=0): the Link
    decides when to reconnect, so the backoff is ours and visible in health."""
    framer = _FRAMERS[source.transport]
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    if source.serial:
        client = AsyncModbusSerialClient(
            source.serial, framer=framer, baudrate=source.baudrate, bytesize=source.bytesize,
            parity=source.parity, stopbits=source.stopbits, timeout=source.timeout,
            retries=source.retries, reconnect_delay=0, name=source.id,
        )
    else:
        assert source.host is not None
        client = AsyncModbusTcpClient(
            source.host, port=source.port, framer=framer, timeout=source.timeout,
            retries=source.retries, reconnect_delay=0, name=source.id,
        )
    _fail_garbled_answers(client)
    return client


def _fail_garbled_answers(client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
    """pymodbus raises an answer it cannot decode out of the transport's receive callback,
    where the event loop logs it as a fatal transport error with a traceback; fail the request
    waiting for that answer instead, so the adapter reports it for its source in one line."""
    manager: Any = client.ctx
    receive = manager.callback_data

    def callback_data(data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        try:
            return int(receive(data, addr))
        except ModbusException as exc:
            future = manager.response_future
            if not future.done():
                future.set_exception(GarbledAnswer(str(exc)))
            return len(data)  # the rest of a garbled frame is garbage too

    manager.callback_data = callback_data


class Link:
    """A client plus capped exponential backoff between connection attempts."""

    def __init__(self, key: tuple[Any, ...], source: ModbusSourceConfig):
        self.key = key
        self.source = source
        self.where = describe(source)
        self.client = make_client(source)
        self.backoff = source.reconnect_backoff()
        self.users = 0
        self.connects = 0
        self.failed_connects = 0
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self.client.connected

    async def ensure_connected(self) -> bool:
        """Connect unless connected or still backing off; False when not connected."""
        if self.client.connected:
            return True
        async with self._lock:
            if self.client.connected:
                return True
            if self.backoff.retry_in > 0:
                return False
            connected = await self.client.connect()
            _honour_cancel()
            if connected:
                self.backoff.reset()
                self.connects += 1
                return True
            self.client.close()
            self.failed_connects += 1
            self.backoff.next()
            return False

    def lost(self) -> None:
        """Drop a connection that failed; the next scan reconnects (then backs off)."""
        self.client.close()

    async def read(self, kind: str, unit: int, start: int, count: int) -> Any:
        """One read request; raises pymodbus' ModbusIOException on no answer and
        ConnectionException when not connected."""
        client = self.client
        if kind == "holding":
            response = await client.read_holding_registers(start, count=count, device_id=unit)
        elif kind == "input":
            response = await client.read_input_registers(start, count=count, device_id=unit)
        elif kind == "coil":
            response = await client.read_coils(start, count=count, device_id=unit)
        else:
            response = await client.read_discrete_inputs(start, count=count, device_id=unit)
        _honour_cancel()
        return response


def _honour_cancel() -> None:
    """On Python 3.11 asyncio.wait_for (used inside pymodbus) drops a cancellation that
    arrives together with the answer; raise it here so a stopping source really stops."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_LINKS: dict[tuple[Any, ...], Link] = {}
_LINE = ("transport", "baudrate", "parity", "stopbits", "bytesize")


def link_key(source: ModbusSourceConfig) -> tuple[Any, ...]:
    """Sources with equal keys share one connection: a serial port, or a gateway's host:port."""
    loop = id(asyncio.get_running_loop())
    if source.serial:
        return (loop, "serial", source.serial)
    if source.transport != "tcp":
        return (loop, "gateway", source.host, source.port)
    return (loop, "tcp", id(source))


def acquire_link(source: ModbusSourceConfig) -> Link:
    """The Link for this source, shared with the other sources on the same bus."""
    key = link_key(source)
    link = _LINKS.get(key)
    if link is None:
        link = _LINKS[key] = Link(key, source)
    else:
        differ = [n for n in _LINE if getattr(link.source, n) != getattr(source, n)]
        if differ:
            raise ValueError(
                f"source {source.id!r} shares {link.where} with source {link.source.id!r} but "
                f"sets {', '.join(differ)} differently; one bus has one line setting, so make "
                f"them equal"
            )
    link.users += 1
    return link


def release_link(link: Link) -> None:
    """Give a Link back; the last user closes it."""
    link.users -= 1
    if link.users <= 0:
        link.client.close()
        if _LINKS.get(link.key) is link:
            del _LINKS[link.key]
