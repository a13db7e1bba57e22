"""`collector modbus-scan`: read a range of registers and show what each could mean.

For commissioning without the manual: every address with its raw word, int16 and uint16, and
for each pair of registers float32/int32/uint32 in all four byte orders, so "the 229.7 V
register" stands out; then a ready-to-paste YAML tag line with the most plausible reading.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import struct
import sys
from typing import Any

from pydantic import ValidationError
from pymodbus.exceptions import ConnectionException, ModbusIOException

from collector.config import parse_duration

from .adapter import EXCEPTION_NAMES
from .codec import ORDERS, decode_registers
from .config import MAX_BITS, MAX_REGISTERS, ModbusSourceConfig
from .link import describe, make_client

PAIR_TYPES = ("float32", "int32", "uint32")


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `modbus-scan` to the `collector` command line."""
    p = subparsers.add_parser(
        "modbus-scan",
        help="read a range of Modbus registers and show every plausible interpretation",
        description="Reads COUNT registers (or coils) from START and prints each address as "
                    "hex, int16, uint16 and, for each pair, float32/int32/uint32 in the byte "
                    "orders ABCD, CDAB, BADC and DCBA, plus a YAML tag line to paste.",
    )
    add_arguments(p)
    p.set_defaults(func=handler)


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", help="Modbus TCP device or serial gateway, e.g. 192.168.0.20")
    where.add_argument("--serial", help="serial port of an RS-485 adapter, e.g. /dev/ttyUSB0")
    p.add_argument("--port", type=int, default=502, help="TCP port (default 502)")
    p.add_argument("--framer", choices=("tcp", "rtu", "ascii"),
                   help="tcp (default with --host), rtu (default with --serial; with --host: "
                        "a serial gateway speaking RTU over TCP) or ascii")
    p.add_argument("--baudrate", type=int, default=9600, help="serial speed (default 9600)")
    p.add_argument("--parity", choices=("N", "E", "O"), default="N", help="default N")
    p.add_argument("--stopbits", type=int, choices=(1, 2), default=1, help="default 1")
    p.add_argument("--bytesize", type=int, choices=(7, 8), default=8, help="default 8")
    p.add_argument("--unit", type=int, default=1, help="unit id (slave id), default 1")
    p.add_argument("--register", choices=("holding", "input", "coil", "discrete"),
                   default="holding", help="register kind (default holding)")
    p.add_argument("--start", type=int, default=0, help="first 0-based address (default 0)")
    p.add_argument("--count", type=int, default=10, help="how many to read (default 10)")
    p.add_argument("--timeout", default="1s", help="answer timeout, e.g. 500ms (default 1s)")


def handler(args: argparse.Namespace) -> int:
    """Run the scan; 0 when the range was read, 1 on a device error, 2 on bad arguments."""
    try:
        source = _source(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_scan(source, args))
    except KeyboardInterrupt:
        return 130


def _source(args: argparse.Namespace) -> ModbusSourceConfig:
    bits = args.register in ("coil", "discrete")
    limit = MAX_BITS if bits else MAX_REGISTERS
    if not 1 <= args.count <= limit:
        raise ValueError(f"--count must be 1..{limit} for {args.register} (got {args.count})")
    if not 0 <= args.start <= 65535 or args.start + args.count - 1 > 65535:
        raise ValueError(f"--start {args.start} with --count {args.count} runs outside "
                         f"the addresses 0..65535")
    if not 0 <= args.unit <= 255:
        raise ValueError(f"--unit must be 0..255 (got {args.unit})")
    timeout = parse_duration(args.timeout)
    fields: dict[str, Any] = {"id": "scan", "protocol": "modbus", "unit": args.unit,
                              "timeout": timeout, "retries": 0, "framer": args.framer}
    if args.host:
        fields.update(host=args.host, port=args.port)
    else:
        fields.update(serial=args.serial, baudrate=args.baudrate, parity=args.parity,
                      stopbits=args.stopbits, bytesize=args.bytesize)
    try:
        return ModbusSourceConfig(**fields)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ValueError(f"--{err['loc'][-1]}: {err['ctx'].get('error', err['msg'])}"
                         if err.get("ctx") else f"--{err['loc'][-1]}: {err['msg']}") from None


async def _tcp_reachable(host: str, port: int, wait: float) -> str | None:
    """Why a TCP connection fails, in words (pymodbus only says that it failed)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
    except TimeoutError:
        return f"no TCP answer within {wait:g} s (wrong address, or a firewall)"
    except ConnectionRefusedError:
        return "connection refused (nothing listens on that port; check --port)"
    except socket.gaierror:
        return f"unknown host {host!r}"
    except OSError as exc:
        return exc.strerror or str(exc)
    writer.close()
    return None


async def _scan(source: ModbusSourceConfig, args: argparse.Namespace) -> int:
    timeout = source.timeout
    where = describe(source)
    if source.host:
        problem = await _tcp_reachable(source.host, source.port, timeout)
        if problem:
            print(f"error: cannot connect to {where}: {problem}", file=sys.stderr)
            return 1
    client = make_client(source)
    try:
        if not await client.connect():
            print(f"error: cannot open {where} (check the port name, permissions, and that "
                  f"no other program uses it)", file=sys.stderr)
            return 1
        reader = {"holding": client.read_holding_registers, "input": client.read_input_registers,
                  "coil": client.read_coils, "discrete": client.read_discrete_inputs}
        try:
            response = await reader[args.register](args.start, count=args.count,
                                                   device_id=args.unit)
        except ModbusIOException:
            print(f"error: no answer from unit {args.unit} at {where} within {timeout:g} s "
                  f"(check --unit, the wiring and the line settings)", file=sys.stderr)
            return 1
        except ConnectionException as exc:
            print(f"error: connection to {where} lost: {exc}", file=sys.stderr)
            return 1
    finally:
        client.close()
    last = args.start + args.count - 1
    if response.isError():
        code = response.exception_code
        hint = (" (the range includes addresses the device does not have; try a smaller "
                "--count or another --start)" if code == 2 else "")
        print(f"error: unit {args.unit} answered exception {code} "
              f"({EXCEPTION_NAMES.get(code, 'unknown')}) for {args.register} "
              f"{args.start}..{last}{hint}", file=sys.stderr)
        return 1
    print(f"# {args.register} {args.start}..{last} of unit {args.unit} at {where}")
    if args.register in ("coil", "discrete"):
        for i, bit in enumerate(response.bits[: args.count]):
            address = args.start + i
            print(f"{address:5d}  {int(bool(bit))}    yaml: - {{name: {args.register}_{address}, "
                  f"register: {args.register}, address: {address}, type: bool}}")
        return 0
    print(format_registers(list(response.registers), args.start, args.register))
    return 0


def format_registers(words: list[int], start: int, kind: str) -> str:
    """The table for a technician: one block of lines per address."""
    lines = [f"{'addr':>5}  {'hex':6}  {'uint16':>6}  {'int16':>6}"]
    consumed = -1
    for i, word in enumerate(words):
        address = start + i
        int16 = word - 0x10000 if word & 0x8000 else word
        lines.append(f"{address:5d}  0x{word:04X}  {word:6d}  {int16:6d}")
        if i + 1 < len(words):
            pair = words[i : i + 2]
            for type_ in PAIR_TYPES:
                cells = "  ".join(
                    f"{order} {_fmt(decode_registers(pair, type_, order))}" for order in ORDERS)
                lines.append(f"{'':15}{address}-{address + 1} {type_:7}  {cells}")
        if i == consumed:
            lines.append(f"{'':15}(second register of the float32 at {address - 1})")
            continue
        tag = suggest(words[i : i + 2], address, kind)
        if "float32" in tag:
            consumed = i + 1
        lines.append(f"{'':15}yaml: - {tag}")
    return "\n".join(lines)


def suggest(words: list[int], address: int, kind: str) -> str:
    """A YAML tag for the most plausible meaning: a float32 whose shortest decimal form is
    short (a measured value such as 229.7), otherwise int16 for small negatives, else uint16."""
    base = f"name: {kind}_{address}, register: {kind}, address: {address}"
    if len(words) == 2 and any(words):
        best: tuple[int, str] | None = None
        for order in ORDERS:
            value = decode_registers(words, "float32", order)
            digits = _digits(value)
            if digits is not None and (best is None or digits < best[0]):
                best = (digits, order)
        if best is not None and best[0] <= 5:
            return f"{{{base}, type: float32, byte_order: {best[1]}}}"
    word = words[0]
    if word & 0x8000 and word - 0x10000 >= -10000:
        return f"{{{base}, type: int16}}"
    return f"{{{base}, type: uint16}}"


def _digits(value: Any) -> int | None:
    """Significant digits needed to write a float32 exactly, if it looks like a reading."""
    if not isinstance(value, float) or not math.isfinite(value):
        return None
    if not 1e-3 <= abs(value) < 1e9:
        return None
    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        if struct.pack(">f", float(f"{value:.{digits}g}")) == packed:
            return digits
    return 9


def _fmt(value: Any) -> str:
    if value is None:
        return "nan/inf"
    if isinstance(value, float):
        return f"{value:.7g}"
    return str(value)
