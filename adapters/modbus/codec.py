"""Register words to values and back: every type of the contract in the four byte orders.

Our own codec on `struct`, because a device's "float" can have its words swapped (CDAB), the
bytes inside each word swapped (BADC), or both (DCBA), and pymodbus' helpers only reverse
whole word lists. Byte order letters name the bytes of the big-endian value: ABCD is the
value's most significant byte first in the first register. For 64-bit values the same idea
spans four words: CDAB reverses the word order, BADC swaps bytes within each word, DCBA both.
A value of one register has no word order: CDAB reads as ABCD and DCBA as BADC; for int8 and
uint8 the byte swap comes first and `byte` then picks the low or high byte of the swapped
register, as for Telegraf's INT8L/INT8H on a device that swaps its bytes. A float32 is given
as the shortest decimal that reads back as the same 32-bit float (229.7, as the device meant).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Literal

from collector.model import Value
from collector.sources.float32 import float32_table, shortest_float32

RegisterKind = Literal["holding", "input", "coil", "discrete"]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]

BIT_KINDS = frozenset({"coil", "discrete"})
ORDERS: tuple[ByteOrder, ...] = ("ABCD", "CDAB", "BADC", "DCBA")

# registers each type occupies; `string` uses its `length`
WIDTH = {
    "bool": 1, "int8": 1, "uint8": 1, "int16": 1, "uint16": 1, "float16": 1,
    "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4,
}  # fmt: skip
TYPES = (*WIDTH, "string")
NUMBER_CODES = {
    "int16": "h", "uint16": "H", "float16": "e", "int32": "i", "uint32": "I", "float32": "f",
    "int64": "q", "uint64": "Q", "float64": "d",
}  # fmt: skip
FLOAT_TYPES = frozenset({"float16", "float32", "float64"})

# functions that take (registers, offset) and give the value or None (not a finite number)
Decoder = Callable[[Sequence[int], int], Value]


def register_count(type_: str, length: int | None = None) -> int:
    """How many 16-bit registers a value of this type occupies."""
    if type_ == "string":
        if not length:
            raise ValueError("a string needs its length in registers")
        return length
    return WIDTH[type_]


def allowed_orders(type_: str) -> tuple[ByteOrder, ...]:
    """The byte orders accepted for this type: all four for numbers (on one register CDAB is
    ABCD and DCBA is BADC), the byte swap for text, no swap for a single bit."""
    if type_ == "bool":
        return ("ABCD", "CDAB")
    if type_ == "string":
        return ("ABCD", "BADC", "DCBA")
    return ORDERS


def _swaps(order: str) -> tuple[bool, bool]:
    """(reverse the word order, swap the bytes within each word)."""
    return order in ("CDAB", "DCBA"), order in ("BADC", "DCBA")


@lru_cache(maxsize=256)  # tags of one type and byte order share one decoder
def make_decoder(
    type_: str,
    byte_order: str = "ABCD",
    *,
    byte: str = "low",
    bit: int | None = None,
    length: int | None = None,
) -> Decoder:
    """A function decoding one value from a register list at an offset; built once per tag
    so the per-scan work is one `struct` call."""
    if type_ == "bool":
        if bit is None:
            return lambda regs, i: regs[i] != 0
        mask = 1 << bit
        return lambda regs, i: bool(regs[i] & mask)
    if type_ in ("int8", "uint8"):
        # the byte swap (BADC, DCBA) first, then `byte` picks from the swapped register
        shift = 8 if (byte == "high") != _swaps(byte_order)[1] else 0
        if type_ == "uint8":
            return lambda regs, i: (regs[i] >> shift) & 0xFF
        return lambda regs, i: ((regs[i] >> shift) & 0xFF ^ 0x80) - 0x80
    if type_ == "string":
        n = register_count(type_, length)
        packer = struct.Struct(("<" if _swaps(byte_order)[1] else ">") + f"{n}H")

        def decode_string(regs: Sequence[int], i: int) -> Value:
            raw = packer.pack(*regs[i : i + n]).split(b"\0", 1)[0]
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")

        return decode_string

    n = WIDTH[type_]
    words_reversed, bytes_swapped = _swaps(byte_order)
    packer = struct.Struct(("<" if bytes_swapped else ">") + f"{n}H")
    unpack = struct.Struct(">" + NUMBER_CODES[type_]).unpack
    pack = packer.pack
    if n == 1:
        def decode_word(regs: Sequence[int], i: int) -> Value:
            return unpack(pack(regs[i]))[0]

        decode: Decoder = decode_word
    elif words_reversed:
        def decode_reversed(regs: Sequence[int], i: int) -> Value:
            return unpack(pack(*regs[i : i + n][::-1]))[0]

        decode = decode_reversed
    else:
        def decode_words(regs: Sequence[int], i: int) -> Value:
            return unpack(pack(*regs[i : i + n]))[0]

        decode = decode_words
    if type_ not in FLOAT_TYPES:
        return decode
    isfinite = math.isfinite
    if type_ == "float32":  # the shortest decimal, most often found by one lookup
        known = float32_table().get

        def decode_float32(regs: Sequence[int], i: int) -> Value:
            value = unpack(pack(*regs[i : i + 2]))[0]
            found = known(value)
            if found is not None:
                return found
            return shortest_float32(value) if isfinite(value) else None

        def decode_float32_reversed(regs: Sequence[int], i: int) -> Value:
            value = unpack(pack(regs[i + 1], regs[i]))[0]
            found = known(value)
            if found is not None:
                return found
            return shortest_float32(value) if isfinite(value) else None

        return decode_float32_reversed if words_reversed else decode_float32

    def decode_finite(regs: Sequence[int], i: int) -> Value:
        value = decode(regs, i)
        return value if isfinite(value) else None  # type: ignore[arg-type]

    return decode_finite


def decode_registers(
    registers: Sequence[int],
    type_: str,
    byte_order: str = "ABCD",
    *,
    byte: str = "low",
    bit: int | None = None,
    length: int | None = None,
) -> Value:
    """Decode one value from the start of `registers`; None for a NaN or infinite float."""
    needed = register_count(type_, length) if type_ != "string" else (length or len(registers))
    if len(registers) < needed:
        raise ValueError(f"{type_} needs {needed} registers, got {len(registers)}")
    return make_decoder(type_, byte_order, byte=byte, bit=bit, length=needed)(registers, 0)


def encode_value(
    value: Value,
    type_: str,
    byte_order: str = "ABCD",
    *,
    byte: str = "low",
    bit: int | None = None,
    length: int | None = None,
) -> list[int]:
    """The registers a device holds for `value` (the inverse of decoding); used by the
    simulator, the benchmark and the tests. Bits and bytes fill the rest of the word with 0."""
    if type_ == "bool":
        return [(1 << bit if value else 0) if bit is not None else int(bool(value))]
    words_reversed, bytes_swapped = _swaps(byte_order)
    if type_ in ("int8", "uint8"):
        return [(int(value) & 0xFF) << (8 if (byte == "high") != bytes_swapped else 0)]  # type: ignore[arg-type]
    if type_ == "string":
        n = register_count(type_, length)
        data = str(value).encode("utf-8")
        if len(data) > 2 * n:
            raise ValueError(f"{value!r} does not fit in {n} registers")
        data = data.ljust(2 * n, b"\0")
        return list(struct.unpack(("<" if bytes_swapped else ">") + f"{n}H", data))
    n = WIDTH[type_]
    data = struct.pack(">" + NUMBER_CODES[type_], value)
    words = list(struct.unpack(("<" if bytes_swapped else ">") + f"{n}H", data))
    return words[::-1] if words_reversed else words


# a whole block's values from its registers, in the order of the fields it was made for
BlockDecoder = Callable[[Sequence[int]], list[Value]]


def make_block_decoder(fields: Sequence[tuple[str, str, int]], count: int) -> BlockDecoder | None:
    """One decoder for a read request's whole answer of `count` registers: the registers
    packed into bytes once and every value unpacked by one `struct` call, instead of one
    decoder call per tag. `fields` are (type, byte_order, offset in the block) in address
    order. None when the block is not that simple: a field that is not a number of the
    types `struct` knows (bits, bytes, text), words in reverse order (CDAB and DCBA on 32 and
    64 bits), fields that overlap, or byte swaps that differ between fields; those blocks
    keep each tag's own decoder (`make_decoder`), which gives the same values."""
    if not fields:
        return None
    codes: list[str] = []
    swaps: set[bool] = set()
    floats: list[tuple[int, str]] = []
    at = 0
    for i, (type_, order, offset) in enumerate(fields):
        if type_ not in NUMBER_CODES or offset < at:
            return None
        width = WIDTH[type_]
        words_reversed, bytes_swapped = _swaps(order)
        if words_reversed and width > 1:
            return None
        swaps.add(bytes_swapped)
        if offset > at:
            codes.append(f"{2 * (offset - at)}x")  # registers no tag uses, read through
        codes.append(NUMBER_CODES[type_])
        at = offset + width
        if type_ in FLOAT_TYPES:
            floats.append((i, type_))
    if len(swaps) > 1 or at > count:
        return None
    pack = struct.Struct(("<" if swaps.pop() else ">") + f"{count}H").pack
    unpack = struct.Struct(">" + "".join(codes)).unpack_from
    if not floats:
        return lambda regs: list(unpack(pack(*regs)))
    known = float32_table().get
    isfinite = math.isfinite

    def decode_block(regs: Sequence[int]) -> list[Value]:
        values: list[Value] = list(unpack(pack(*regs)))
        for i, type_ in floats:
            value: float = values[i]  # type: ignore[assignment]
            if not isfinite(value):
                values[i] = None
            elif type_ == "float32":
                found = known(value)
                values[i] = found if found is not None else shortest_float32(value)
        return values

    return decode_block
