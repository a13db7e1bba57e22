"""The YAML of a Modbus source and its tags, checked before any device is touched.

Every rule a technician can break (a float on a coil, a `bit` on a float, a `length` on a
number, a byte order that does not fit the width, a value running past address 65535, a
string longer than one request) is rejected here with the field named and the fix said.
"""

from __future__ import annotations

import re
import warnings
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from collector.config import SourceConfig, TagConfig
from collector.sources.problems import Problems, raise_problems

from .codec import BIT_KINDS, TYPES, allowed_orders, register_count

MAX_REGISTERS = 125  # the protocol's limit for one read of holding/input registers
MAX_BITS = 2000  # ... and of coils/discrete inputs

# the register-map numbering of many manuals: a leading digit for the kind, then 1-based
CONVENTION_KINDS = {"0": "coil", "1": "discrete", "3": "input", "4": "holding"}
_CONVENTIONAL = re.compile(r"^([0134])(\d{4,5})$")


def parse_address(value: Any) -> Any:
    """A 0-based address as a number; text is refused, with the 4xxxx/3xxxx/1xxxx/0xxxx
    register-map numbering explained when it looks like that."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    match = _CONVENTIONAL.match(text)
    if match and int(match.group(2)) >= 1:
        kind, number = CONVENTION_KINDS[match.group(1)], int(match.group(2))
        raise ValueError(
            f"{value!r} looks like register-map numbering ({match.group(1)}xxxx: {kind} "
            f"registers counted from 1); that is {kind} register {number}, protocol address "
            f"{number - 1}: write `register: {kind}` and `address: {number - 1}` (a number, "
            f"no quotes). If the map counts from 0, write `address: {number}`")
    if text.isdigit():
        raise ValueError(f"{value!r} is text; write the address as a number without quotes "
                         f"(address: {int(text)})")
    raise ValueError(f"{value!r} is not an address; write the 0-based protocol address as a "
                     f"number (0 to 65535)")


Address = Annotated[int, BeforeValidator(parse_address), Field(ge=0, le=65535)]

TagType = Literal[
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "string",
]  # fmt: skip
assert set(TagType.__args__) == set(TYPES)  # type: ignore[attr-defined]


# `register` is the contract's field name; it hides ABCMeta.register, which no one calls on
# a config model, so pydantic's warning about it is silenced for this one class
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class ModbusTagConfig(TagConfig):
    """One value read from a Modbus device."""

    register: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: Address  # 0-based protocol address
    type: TagType | None = None  # default: bool on coil/discrete, uint16 on registers
    byte_order: Literal["ABCD", "CDAB", "BADC", "DCBA"] = "ABCD"
    byte: Literal["low", "high"] | None = None  # int8/uint8 only; default low
    bit: int | None = Field(None, ge=0, le=15)  # bool from one bit of a register
    length: int | None = Field(None, ge=1, le=MAX_REGISTERS)  # string only, in registers
    unit_id: int | None = Field(None, ge=0, le=255)  # another device on the same connection

    @property
    def kind(self) -> str:
        return self.register

    @property
    def value_type(self) -> str:
        return self.type or ("bool" if self.register in BIT_KINDS else "uint16")

    @property
    def width(self) -> int:
        """Registers (or bits, for coil/discrete) the tag occupies."""
        if self.register in BIT_KINDS:
            return 1
        return register_count(self.value_type, self.length)

    @model_validator(mode="after")
    def _fits(self) -> ModbusTagConfig:
        problems: Problems = []
        kind, type_ = self.register, self.value_type
        if kind in BIT_KINDS and type_ != "bool":
            problems.append(("type", f"a {kind} holds a single bit, so its type must be bool "
                             f"(not {type_}); use register: holding or input for {type_}", type_))
        if self.bit is not None and (type_ != "bool" or kind in BIT_KINDS):
            what = f"a {kind}" if kind in BIT_KINDS else f"type {type_}"
            problems.append(("bit", f"'bit' picks one bit of a holding/input register for a "
                             f"bool tag; remove it for {what}", self.bit))
        if self.byte is not None and type_ not in ("int8", "uint8"):
            problems.append(("byte", f"'byte' (low/high) is only for int8/uint8; remove it "
                             f"for type {type_}", self.byte))
        if type_ == "string" and self.length is None:
            problems.append(("length", "a string needs 'length': the number of registers it "
                             "occupies (two characters each)", None))
        if self.length is not None and type_ != "string":
            problems.append(("length", f"'length' is only for type string; remove it for "
                             f"type {type_}", self.length))
        if type_ in ("bool", "string"):
            for field in self.normalising:
                problems.append((field, f"scale, offset, clamp and nan_value apply to numbers "
                                 f"only; remove '{field}' for type {type_}", getattr(self, field)))
        if not problems:
            orders = allowed_orders(type_)
            if self.byte_order not in orders:
                if type_ == "bool":
                    message = (f"{self.byte_order} does not apply to type bool (a bit has no "
                               "byte order); remove byte_order and pick the bit with 'bit'")
                else:
                    message = (f"{self.byte_order} does not fit type {type_} (a string's "
                               f"registers are read in order); use {' or '.join(orders)}")
                problems.append(("byte_order", message, self.byte_order))
            last = self.address + self.width - 1
            if last > 65535:
                problems.append(("address", f"{type_} at address {self.address} occupies "
                                 f"{self.width} registers and runs past the last address "
                                 f"65535 (to {last}); check the address", self.address))
        raise_problems(problems, "modbus")
        return self


class ModbusSourceConfig(SourceConfig):
    """One Modbus connection: a TCP device, a serial bus, or a serial gateway (RTU over TCP)."""

    protocol: Literal["modbus"]
    host: str | None = None
    port: int = Field(502, ge=1, le=65535)
    serial: str | None = None  # e.g. /dev/ttyUSB0
    baudrate: int = Field(9600, ge=300, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    framer: Literal["tcp", "rtu", "ascii"] | None = None  # default: tcp with host, rtu with serial
    unit: int = Field(1, ge=0, le=255)
    retries: int = Field(1, ge=0, le=10)  # extra attempts of a request that got no answer
    max_registers: int = Field(MAX_REGISTERS, ge=1, le=MAX_REGISTERS)
    max_bits: int = Field(MAX_BITS, ge=1, le=MAX_BITS)
    max_gap: int = Field(16, ge=0, le=MAX_BITS)  # unused registers (bits) worth reading through
    tags: list[ModbusTagConfig] = []  # type: ignore[assignment]

    @property
    def transport(self) -> str:
        return self.framer or ("rtu" if self.serial else "tcp")

    @model_validator(mode="after")
    def _connection(self) -> ModbusSourceConfig:
        problems: Problems = []
        if (self.host is None) == (self.serial is None):
            problems.append(("host", "give either 'host' (Modbus TCP or a serial gateway) or "
                             "'serial' (RTU on a serial port such as /dev/ttyUSB0), not both "
                             "and not neither", self.host))
        if self.host is not None:
            for name in ("baudrate", "parity", "stopbits", "bytesize"):
                if name in self.model_fields_set:
                    problems.append((name, f"'{name}' is a serial port setting; remove it, or "
                                     f"use 'serial' instead of 'host'", getattr(self, name)))
        if self.serial is not None and self.framer == "tcp":
            problems.append(("framer", "framer tcp needs 'host'; a serial port speaks rtu "
                             "(default) or ascii", self.framer))
        if "port" in self.model_fields_set and self.serial is not None:
            problems.append(("port", "'port' is the TCP port; for a serial line name the "
                             "device in 'serial'", self.port))
        if self.interval <= 0:
            problems.append(("interval", "must be more than 0 (e.g. 1s or 250ms)", self.interval))
        if self.timeout <= 0:
            problems.append(("timeout", "must be more than 0 (e.g. 1s or 500ms)", self.timeout))
        for i, tag in enumerate(self.tags):
            limit = self.max_bits if tag.register in BIT_KINDS else self.max_registers
            if tag.width > limit:
                problems.append((("tags", i, "length"), f"{tag.width} registers do not fit in "
                                 f"one request of at most max_registers={limit}; shorten "
                                 f"the string or raise max_registers", tag.length))
        raise_problems(problems, "modbus")
        return self

    def poll_interval(self) -> float | None:
        return self.interval

    def unit_of(self, tag: ModbusTagConfig) -> int:
        return self.unit if tag.unit_id is None else tag.unit_id
