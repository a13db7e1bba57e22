"""`collector check --explain` for a Modbus tag: what is read, in the words of a register map."""

from __future__ import annotations

from typing import Any

from .codec import BIT_KINDS

FUNCTION = {"coil": (1, "read coils"), "discrete": (2, "read discrete inputs"),
            "holding": (3, "read holding registers"), "input": (4, "read input registers")}
NUMBERING = {"coil": 1, "discrete": 10001, "input": 30001, "holding": 40001}
TYPE_WORDS = {
    "uint16": "a whole number 0 to 65535", "int16": "a whole number -32768 to 32767",
    "uint32": "a whole number 0 to 4294967295", "int32": "a whole number with sign (32 bits)",
    "uint64": "a whole number 0 to 2^64-1", "int64": "a whole number with sign (64 bits)",
    "float16": "a decimal number (IEEE 754 half precision)",
    "float32": "a decimal number (IEEE 754 float)",
    "float64": "a decimal number (IEEE 754 double)",
}
ORDER_WORDS = {"ABCD": "most significant word first, bytes as sent (ABCD)",
               "CDAB": "least significant word first (CDAB, words swapped)",
               "BADC": "bytes swapped within each register (BADC)",
               "DCBA": "words and bytes swapped (DCBA)"}


def explain_tag(source: Any, tag: Any) -> list[str]:
    """Plain sentences: where on which device, which request, how the value is decoded."""
    kind, width, address = tag.register, tag.width, tag.address
    code, words = FUNCTION[kind]
    last = address + width - 1
    where = {"coil": "coil", "discrete": "discrete input"}.get(kind, f"{kind} register")
    span = f"address {address}" if width == 1 else f"addresses {address} to {last}"
    first = NUMBERING[kind] + address
    numbering = (f"{first}" if width == 1 else f"{first} to {first + width - 1}")
    unit = source.unit_of(tag)
    device = source.host and f"{source.host}:{source.port}" or f"{source.serial} {source.baudrate} baud"
    lines = [f"reads {where} {span} (0-based; {numbering} in a manual counting from "
             f"{NUMBERING[kind]}), {width} {'bit' if kind in BIT_KINDS else 'register'}"
             f"{'s' if width > 1 else ''}, with function code {code:02d} ({words}) from unit "
             f"{unit} at {device} every {_seconds(source.interval)}"]
    type_ = tag.value_type
    if kind in BIT_KINDS:
        lines.append("as true/false (the bit is on or off)")
    elif type_ == "bool":
        lines.append(f"as true/false: bit {tag.bit} of the register (0 = least significant)"
                     if tag.bit is not None else "as true/false: true when the register is not 0")
    elif type_ in ("int8", "uint8"):
        byte = tag.byte or "low"
        sign = "with sign, -128 to 127" if type_ == "int8" else "0 to 255"
        swap = " after swapping the register's bytes" if tag.byte_order in ("BADC", "DCBA") else ""
        lines.append(f"as {type_}: the {byte} byte of the register{swap} ({sign})")
    elif type_ == "string":
        order = ("high byte first" if tag.byte_order == "ABCD"
                 else "low byte first (bytes swapped)")
        lines.append(f"as text: up to {2 * width} characters, two per register, {order}, "
                     f"ending at the first NUL")
    else:
        order = f", {ORDER_WORDS[tag.byte_order]}" if width > 1 or tag.byte_order != "ABCD" \
            else ""
        lines.append(f"as {type_}: {TYPE_WORDS[type_]}{order}")
    return lines


def _seconds(value: float) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"
