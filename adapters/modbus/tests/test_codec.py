"""The codec against hand-written register tables: every type in every byte order it takes,
boundaries, negative zero, NaN and infinity, strings with and without trailing NULs."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.modbus.codec import (
    ORDERS,
    TYPES,
    WIDTH,
    allowed_orders,
    decode_registers,
    encode_value,
    make_block_decoder,
    make_decoder,
)

W32 = {"ABCD": [0x0102, 0x0304], "CDAB": [0x0304, 0x0102],
       "BADC": [0x0201, 0x0403], "DCBA": [0x0403, 0x0201]}
W64 = {"ABCD": [0x0102, 0x0304, 0x0506, 0x0708], "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
       "BADC": [0x0201, 0x0403, 0x0605, 0x0807], "DCBA": [0x0807, 0x0605, 0x0403, 0x0201]}


def in_order(abcd: list[int], order: str) -> list[int]:
    """Literal ABCD words rearranged: a table helper, kept trivially simple on purpose."""
    out = abcd[::-1] if order in ("CDAB", "DCBA") else list(abcd)
    return [((w & 0xFF) << 8) | (w >> 8) for w in out] if order in ("BADC", "DCBA") else out


CASES: list[tuple[str, str, list[int], object]] = [
    # type, byte order, registers, expected value (None: not a finite number -> quality bad)
    ("int16", "ABCD", [0x8000], -32768), ("int16", "ABCD", [0x7FFF], 32767),
    ("int16", "ABCD", [0xFFFF], -1), ("int16", "ABCD", [0x0000], 0),
    ("int16", "BADC", [0x0080], -32768), ("int16", "BADC", [0xFEFF], -2),
    ("int16", "BADC", [0xFF7F], 32767),
    ("uint16", "ABCD", [0xFFFF], 65535), ("uint16", "ABCD", [0x0000], 0),
    ("uint16", "ABCD", [0x1234], 0x1234), ("uint16", "BADC", [0x3412], 0x1234),
    ("uint16", "BADC", [0xFFFF], 65535),
    ("float16", "ABCD", [0x3C00], 1.0), ("float16", "ABCD", [0x7BFF], 65504.0),
    ("float16", "ABCD", [0xFBFF], -65504.0), ("float16", "ABCD", [0x8000], -0.0),
    ("float16", "ABCD", [0x0001], 2.0**-24), ("float16", "BADC", [0x003C], 1.0),
    ("float16", "BADC", [0x0080], -0.0),
    ("float16", "ABCD", [0x7E00], None), ("float16", "ABCD", [0x7C00], None),
    ("float16", "ABCD", [0xFC00], None), ("float16", "BADC", [0x007C], None),
    ("int8", "ABCD", [0x80FF], -1), ("uint8", "ABCD", [0x80FF], 255),
    ("int8", "ABCD", [0x7F80], -128), ("uint8", "ABCD", [0x0000], 0),
    ("bool", "ABCD", [0x0000], False), ("bool", "ABCD", [0x0100], True),
    ("string", "ABCD", [0x4142, 0x4344], "ABCD"), ("string", "BADC", [0x4142, 0x4344], "BADC"),
    ("string", "DCBA", [0x4142, 0x4344], "BADC"),
    ("string", "ABCD", [0x4F4B, 0x0000, 0x0000], "OK"),
    ("string", "ABCD", [0x4F4B, 0x2100], "OK!"), ("string", "ABCD", [0x0000, 0x0000], ""),
    ("string", "ABCD", [0x4100, 0x4242], "A"), ("string", "BADC", [0x4B4F, 0x0021], "OK!"),
    ("string", "ABCD", [0x2020, 0x4120], "  A "), ("string", "ABCD", [0xE9E9], "\xe9\xe9"),
    ("string", "ABCD", [0xC3A9, 0x0000], "\xe9"),
    # one register: CDAB is ABCD, DCBA is BADC
    ("int16", "CDAB", [0x8000], -32768), ("int16", "DCBA", [0x0080], -32768),
    ("uint16", "CDAB", [0x1234], 0x1234), ("uint16", "DCBA", [0x3412], 0x1234),
    ("float16", "CDAB", [0x3C00], 1.0), ("float16", "DCBA", [0x003C], 1.0),
]
for order in ORDERS:
    CASES += [
        ("int32", order, in_order([0x0102, 0x0304], order), 0x01020304),
        ("int32", order, in_order([0x8000, 0x0000], order), -(2**31)),
        ("int32", order, in_order([0x7FFF, 0xFFFF], order), 2**31 - 1),
        ("int32", order, in_order([0xFFFF, 0xFFFE], order), -2),
        ("uint32", order, in_order([0x0102, 0x0304], order), 0x01020304),
        ("uint32", order, in_order([0xFFFF, 0xFFFF], order), 2**32 - 1),
        ("uint32", order, in_order([0x8000, 0x0000], order), 2**31),
        ("float32", order, in_order([0x3F80, 0x0000], order), 1.0),
        ("float32", order, in_order([0x4365, 0xB333], order), 229.7),
        ("float32", order, in_order([0x3DCC, 0xCCCD], order), 0.1),
        ("float32", order, in_order([0x006C, 0xE3EE], order), 1e-38),
        ("float32", order, in_order([0x8000, 0x0000], order), -0.0),
        ("float32", order, in_order([0x0000, 0x0000], order), 0.0),
        ("float32", order, in_order([0x7F7F, 0xFFFF], order), 3.4028235e38),
        ("float32", order, in_order([0xFF7F, 0xFFFF], order), -3.4028235e38),
        ("float32", order, in_order([0x0000, 0x0001], order), 1e-45),
        ("float32", order, in_order([0x0080, 0x0000], order), 1.1754944e-38),
        ("float32", order, in_order([0x7FC0, 0x0000], order), None),
        ("float32", order, in_order([0xFFC0, 0x0001], order), None),
        ("float32", order, in_order([0x7F80, 0x0000], order), None),
        ("float32", order, in_order([0xFF80, 0x0000], order), None),
        ("int64", order, in_order([0x0102, 0x0304, 0x0506, 0x0708], order), 0x0102030405060708),
        ("int64", order, in_order([0x8000, 0, 0, 0], order), -(2**63)),
        ("int64", order, in_order([0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF], order), 2**63 - 1),
        ("int64", order, in_order([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], order), -1),
        ("uint64", order, in_order([0x0102, 0x0304, 0x0506, 0x0708], order), 0x0102030405060708),
        ("uint64", order, in_order([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], order), 2**64 - 1),
        ("uint64", order, in_order([0, 0, 0, 0], order), 0),
        ("float64", order, in_order([0x3FF0, 0, 0, 0], order), 1.0),
        ("float64", order, in_order([0x4009, 0x21FB, 0x5444, 0x2D18], order), math.pi),
        ("float64", order, in_order([0x8000, 0, 0, 0], order), -0.0),
        ("float64", order, in_order([0x7FEF, 0xFFFF, 0xFFFF, 0xFFFF], order), 1.7976931348623157e308),
        ("float64", order, in_order([0, 0, 0, 1], order), 5e-324),
        ("float64", order, in_order([0x7FF8, 0, 0, 0], order), None),
        ("float64", order, in_order([0x7FF0, 0, 0, 0], order), None),
        ("float64", order, in_order([0xFFF0, 0, 0, 0], order), None),
    ]


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(("type_", "order", "regs", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{'.'.join(f'{w:04x}' for w in c[2])}" for c in CASES])
def test_decode_table(type_: str, order: str, regs: list[int], expected: object) -> None:
    length = len(regs) if type_ == "string" else None
    assert same(decode_registers(regs, type_, order, length=length), expected)
    # the same value in the middle of a longer block (as the adapter decodes it)
    padded = [0xDEAD, 0xBEEF, *regs, 0xFFFF]
    assert same(make_decoder(type_, order, length=length)(padded, 2), expected)


@pytest.mark.parametrize(("word", "type_", "order", "byte", "expected"), [
    # BADC/DCBA swap the register's bytes, then `byte` picks: Telegraf's INT8L/INT8H on a
    # device that swaps them
    (0x80FF, "int8", "BADC", "low", -128), (0x80FF, "int8", "BADC", "high", -1),
    (0x80FF, "uint8", "DCBA", "low", 128), (0x80FF, "uint8", "DCBA", "high", 255),
    (0x1234, "uint8", "BADC", "low", 0x12), (0x1234, "uint8", "BADC", "high", 0x34),
    # CDAB on one register is ABCD
    (0x80FF, "int8", "CDAB", "low", -1), (0x80FF, "uint8", "CDAB", "high", 128),
])
def test_bytes_in_every_byte_order(word: int, type_: str, order: str, byte: str,
                                   expected: int) -> None:
    assert decode_registers([word], type_, order, byte=byte) == expected
    assert make_decoder(type_, order, byte=byte)([0xFFFF, word], 1) == expected
    assert encode_value(expected, type_, order, byte=byte)[0] & (
        0xFF << (8 if (byte == "high") != (order in ("BADC", "DCBA")) else 0)) == \
        word & (0xFF << (8 if (byte == "high") != (order in ("BADC", "DCBA")) else 0))


@pytest.mark.parametrize(("raw", "shown"), [
    (0.1, 0.1), (229.7, 229.7), (-229.7, -229.7), (1e-38, 1e-38), (3.4028235e38, 3.4028235e38),
    (16777217.0, 16777216.0), (0.3, 0.3), (1.0 / 3.0, 0.33333334), (-0.0, -0.0),
])
def test_float32_is_the_shortest_decimal_that_reads_back(raw: float, shown: float) -> None:
    regs = encode_value(raw, "float32")
    assert same(decode_registers(regs, "float32"), shown)
    assert struct.pack(">f", shown) == struct.pack(">f", raw)  # the same float32
    for order in ORDERS:
        assert same(decode_registers(encode_value(raw, "float32", order), "float32", order), shown)


def test_every_type_and_order_has_a_table_case() -> None:
    covered = {(c[0], c[1]) for c in CASES}
    wanted = {(t, o) for t in TYPES for o in allowed_orders(t) if t not in ("bool", "int8", "uint8")}
    assert wanted <= covered


@pytest.mark.parametrize(("words", "bit", "expected"), [
    ([0x8001], 0, True), ([0x8001], 1, False), ([0x8001], 15, True), ([0x7FFE], 15, False),
    ([0x0008], 3, True), ([0xFFF7], 3, False),
])
def test_bool_from_bit(words: list[int], bit: int, expected: bool) -> None:
    assert decode_registers(words, "bool", bit=bit) is expected


@pytest.mark.parametrize(("word", "type_", "byte", "expected"), [
    (0x80FF, "int8", "low", -1), (0x80FF, "int8", "high", -128), (0x80FF, "uint8", "low", 255),
    (0x80FF, "uint8", "high", 128), (0x7F00, "int8", "high", 127), (0x007F, "int8", "low", 127),
    (0x0100, "uint8", "low", 0), (0x0100, "uint8", "high", 1),
])
def test_bytes(word: int, type_: str, byte: str, expected: int) -> None:
    assert decode_registers([word], type_, byte=byte) == expected


def test_byte_order_letters_name_the_bytes_of_the_value() -> None:
    for order, regs in W32.items():
        assert decode_registers(regs, "uint32", order) == 0x01020304
    for order, regs in W64.items():
        assert decode_registers(regs, "uint64", order) == 0x0102030405060708


def test_allowed_orders_follow_the_width() -> None:
    assert allowed_orders("float32") == ORDERS
    assert allowed_orders("int64") == ORDERS
    assert allowed_orders("int16") == ORDERS  # one register: CDAB is ABCD, DCBA is BADC
    assert allowed_orders("float16") == ORDERS
    assert allowed_orders("bool") == ("ABCD", "CDAB")
    assert allowed_orders("uint8") == ORDERS  # BADC/DCBA swap the bytes before `byte` picks
    assert "CDAB" not in allowed_orders("string")


def test_too_few_registers_is_an_error() -> None:
    with pytest.raises(ValueError, match="float64 needs 4 registers"):
        decode_registers([1, 2], "float64")


_STRATEGY = {
    "int16": st.integers(-(2**15), 2**15 - 1), "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1), "uint32": st.integers(0, 2**32 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1), "uint64": st.integers(0, 2**64 - 1),
    "float16": st.floats(width=16, allow_nan=False, allow_infinity=False),
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float64": st.floats(allow_nan=False, allow_infinity=False),
}
NUMERIC = [(t, o) for t in _STRATEGY for o in allowed_orders(t)]


@pytest.mark.parametrize(("type_", "order"), NUMERIC)
@given(data=st.data())
def test_round_trip(type_: str, order: str, data: st.DataObject) -> None:
    value = data.draw(_STRATEGY[type_])
    regs = encode_value(value, type_, order)
    assert len(regs) == WIDTH[type_] and all(0 <= w <= 0xFFFF for w in regs)
    decoded = decode_registers(regs, type_, order)
    if type_ == "float32":  # the shortest decimal of the same float32
        assert isinstance(decoded, float) and struct.pack(">f", decoded) == struct.pack(">f", value)
    else:
        assert same(decoded, value)
    # ABCD is plain big-endian: what any other tool would write
    if order == "ABCD":
        code = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q",
                "uint64": "Q", "float16": "e", "float32": "f", "float64": "d"}[type_]
        assert struct.pack(f">{len(regs)}H", *regs) == struct.pack(">" + code, value)


@given(text=st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=16),
       order=st.sampled_from(["ABCD", "BADC", "DCBA"]))
def test_string_round_trip(text: str, order: str) -> None:
    length = 8
    assert decode_registers(encode_value(text, "string", order, length=length), "string",
                            order, length=length) == text


_BLOCK_TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32",
                "float64"]


@given(data=st.data(), swapped=st.booleans())
def test_block_decoder_gives_what_each_tag_decoder_gives(data: st.DataObject,
                                                         swapped: bool) -> None:
    """A block of plain numbers with gaps, decoded at once, equals each field decoded on its
    own: the same types, the same shortest float32, None for NaN and infinity."""
    fields: list[tuple[str, str, int]] = []
    at = data.draw(st.integers(0, 3))
    for _ in range(data.draw(st.integers(1, 12))):
        type_ = data.draw(st.sampled_from(_BLOCK_TYPES))
        order = ("BADC" if swapped else "ABCD") if WIDTH[type_] > 1 else data.draw(
            st.sampled_from(["BADC", "DCBA"] if swapped else ["ABCD", "CDAB"]))
        fields.append((type_, order, at))
        at += WIDTH[type_] + data.draw(st.integers(0, 3))
    count = at + data.draw(st.integers(0, 2))
    regs = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))
    for special in data.draw(st.lists(st.sampled_from([math.nan, math.inf, -math.inf, 229.7,
                                                         -0.0, 1e-38]), max_size=3)):
        i = data.draw(st.integers(0, len(fields) - 1))
        type_, order, offset = fields[i]
        if type_.startswith("float"):
            regs[offset:offset + WIDTH[type_]] = encode_value(special, type_, order)
    decode = make_block_decoder(fields, count)
    assert decode is not None
    got = decode(regs)
    want = [make_decoder(t, o)(regs, off) for t, o, off in fields]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert same(g, w) and type(g) is type(w)


@pytest.mark.parametrize(("fields", "why"), [
    ([("float32", "CDAB", 0)], "words in reverse order"),
    ([("uint64", "DCBA", 0)], "words in reverse order"),
    ([("uint16", "ABCD", 0), ("int16", "ABCD", 0)], "overlapping fields"),
    ([("uint32", "ABCD", 0), ("int16", "ABCD", 1)], "overlapping fields"),
    ([("uint16", "ABCD", 0), ("uint32", "BADC", 1)], "byte swaps that differ"),
    ([("bool", "ABCD", 0)], "a bit"),
    ([("uint8", "ABCD", 0)], "a byte"),
    ([("string", "ABCD", 0)], "text"),
    ([("uint32", "ABCD", 1)], "past the end of the block"),
])
def test_block_decoder_declines_what_it_cannot_do_in_one_call(
        fields: list[tuple[str, str, int]], why: str) -> None:
    assert make_block_decoder(fields, 2) is None, why
