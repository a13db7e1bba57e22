"""`collector modbus-scan`: read a range of registers and show what each could mean.

For commissioning without the manual: every address with its raw word, int16 and uint16, its
bits, bytes and characters, and for each pair of registers float32/int32/uint32 in all four
byte orders, so "the 229.7 V register" stands out; then a ready-to-paste YAML tag line with the
most plausible reading over the whole range (`interpret.py`: floats over large integers,
text where the bytes are printable, bits for status words), the other readings as comments.
`--as TYPE` reads the range as one type instead.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Any

from pydantic import ValidationError
from pymodbus.exceptions import ConnectionException, ModbusIOException

from collector.config import parse_duration

from .adapter import EXCEPTION_NAMES
from .codec import ORDERS, decode_registers
from .config import MAX_BITS, MAX_REGISTERS, ModbusSourceConfig
from .interpret import FORCEABLE, Candidate, best_layout, forced_layout, text_of
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
    p.add_argument("--as", dest="as_type", choices=FORCEABLE, metavar="TYPE",
                   help="read every register as this type (bool: the bits set; int8/uint8: "
                        "both bytes; string: the whole range) instead of the most plausible "
                        f"reading; one of {', '.join(FORCEABLE)}")
    p.add_argument("--byte-order", choices=ORDERS,
                   help="with --as: this byte order instead of the most plausible one")


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
    if getattr(args, "as_type", None) and bits:
        raise ValueError(f"--as reads registers; a {args.register} is a single bit already "
                         f"(use --register holding or input)")
    if getattr(args, "byte_order", None) and not getattr(args, "as_type", None):
        raise ValueError("--byte-order goes with --as TYPE (without --as every byte order is "
                         "shown and the most plausible one suggested)")
    if getattr(args, "as_type", None) in ("int32", "uint32", "float32", "int64", "uint64",
                                          "float64"):
        width = 2 if args.as_type.endswith("32") else 4
        if args.count < width:
            raise ValueError(f"--as {args.as_type} needs --count {width} or more "
                             f"(got {args.count})")
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
    print(format_registers(list(response.registers), args.start, args.register,
                           args.as_type, args.byte_order))
    return 0


def format_registers(words: list[int], start: int, kind: str, as_type: str | None = None,
                     byte_order: str | None = None) -> str:
    """The table for a technician: one block of lines per address, with the most plausible
    reading as a YAML tag line to paste and the other readings as comments."""
    if as_type is None:
        layout = best_layout(words, start)
    else:
        layout = [(c, []) for c in forced_layout(words, start, as_type, byte_order)]
    chosen = {c.address: (c, others) for c, others in layout}
    lines = [f"{'addr':>5}  {'hex':6}  {'uint16':>6}  {'int16':>6}"]
    covered_by: Candidate | None = None
    for i, word in enumerate(words):
        address = start + i
        int16 = word - 0x10000 if word & 0x8000 else word
        lines.append(f"{address:5d}  0x{word:04X}  {word:6d}  {int16:6d}")
        view = _views(word)
        if view:
            lines.append(f"{'':15}{view}")
        if i + 1 < len(words):
            pair = words[i : i + 2]
            for type_ in PAIR_TYPES:
                cells = "  ".join(
                    f"{order} {_fmt(decode_registers(pair, type_, order))}" for order in ORDERS)
                lines.append(f"{'':15}{address}-{address + 1} {type_:7}  {cells}")
        if address in chosen:
            candidate, others = chosen[address]
            covered_by = candidate if candidate.width > 1 else None
            tags = candidate.tags(kind)
            for n, tag in enumerate(tags):
                note = f"   # {candidate.label}: {candidate.shown()}" if n == 0 else ""
                lines.append(f"{'':15}yaml: - {tag}{note}")
            for other in others:
                lines.append(f"{'':15}#  or: - {other.tags(kind)[0]}   # {other.label}: "
                             f"{other.shown()}")
        elif covered_by is not None:
            what = "text" if covered_by.type == "string" else covered_by.type
            part = ("second register" if covered_by.width == 2
                    else f"register {address - covered_by.address + 1} of {covered_by.width}")
            lines.append(f"{'':15}({part} of the {what} at {covered_by.address})")
        else:
            lines.append(f"{'':15}(not a whole {as_type}: too few registers left)")
    return "\n".join(lines)


def _views(word: int) -> str:
    """Bits, bytes and characters of one register, when they could mean something."""
    if not word:
        return ""
    bits = [str(b) for b in range(16) if word >> b & 1]
    parts = [f"bits set: {' '.join(bits)}" if len(bits) <= 8 else f"{len(bits)} bits set"]
    parts.append(f"bytes: high {word >> 8} low {word & 0xFF}")
    text = text_of(word)
    if text is not None:
        parts.append(f"text: {text!r}")
    return " · ".join(parts)


def _fmt(value: Any) -> str:
    if value is None:
        return "nan/inf"
    if isinstance(value, float):
        return f"{value:.7g}"
    return str(value)
