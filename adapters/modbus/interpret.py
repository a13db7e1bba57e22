"""What a run of registers most likely means, ranked: the guesswork of commissioning, written down.

Each candidate (a float32 in one of four byte orders, a 16-bit number, the bits of a status
word, two bytes, ASCII text, a 32-bit counter) gets a plausibility score per register it
covers; `best_layout` then picks, over the whole range, the candidates that cover every register
with the highest total, so one float that happens to look good cannot knock the real floats
beside it out of line. The rules, in words:

- a float32 is plausible when its magnitude is that of a measurement (1e-4 .. 1e8) and its
  low word is not a small integer (2.0000007 is a status word and a count); a short decimal (229.7) is more plausible than a noisy one (231.9092),
  but both beat the large integer the same bits make as uint16;
- small integers are plausible as uint16, small negatives as int16, large integers much less;
- a word with few bits set far apart (0x8008: bits 3 and 15) is a status word;
- a word of two small non-zero bytes (0x0102) is two byte-sized codes;
- three or more registers of printable ASCII (high byte first) ending in a NUL are text;
  printable bytes that run on without one are text only when nothing fits better (the words
  of floats such as 230.4, 0x4366 0x6666, are printable too);
- a device uses one byte order for all its values: the layout is worked out per byte order
  and the order that explains the range best is kept.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.model import Value

from .codec import ORDERS, decode_registers

FORCEABLE = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
             "float16", "float32", "float64", "string")


@dataclass(frozen=True)
class Candidate:
    """One way to read the registers from `address`: a tag (or, for bits and bytes, several
    tags of one register) and how plausible it is per register covered (0..1)."""

    address: int
    width: int  # registers covered
    type: str
    score: float
    value: Value
    fields: dict[str, Any] = field(default_factory=dict)  # byte_order, bit, byte, length
    parts: tuple[Candidate, ...] = ()  # bits and bytes: one tag each

    @property
    def label(self) -> str:
        """How the table names it: `float32 CDAB`, `bits 3 15`, `text (8 registers)`."""
        if self.type == "bits":
            return "bits " + " ".join(str(p.fields["bit"]) for p in self.parts)
        if self.type == "bytes":
            return "bytes high/low"
        if self.type == "string":
            order = self.fields.get("byte_order", "ABCD")
            plural = "register" if self.width == 1 else "registers"
            return f"text ({self.width} {plural}{'' if order == 'ABCD' else ', ' + order})"
        order = self.fields.get("byte_order")
        return f"{self.type} {order}" if order else self.type

    def shown(self) -> str:
        """The value as the table shows it."""
        if self.parts:
            return ", ".join(f"{p.tag_suffix()}={_fmt(p.value)}" for p in self.parts)
        return _fmt(self.value)

    def tag_suffix(self) -> str:
        if "bit" in self.fields:
            return f"bit{self.fields['bit']}"
        if "byte" in self.fields:
            return str(self.fields["byte"])
        return ""

    def tags(self, kind: str) -> list[str]:
        """The YAML flow mappings for `tags:`, one per tag this candidate makes."""
        if self.parts:
            return [line for p in self.parts for line in p.tags(kind)]
        suffix = self.tag_suffix()
        name = f"{kind}_{self.address}" + (f"_{suffix}" if suffix else "")
        items = [f"name: {name}", f"register: {kind}", f"address: {self.address}",
                 f"type: {self.type}"]
        for key in ("byte_order", "bit", "byte", "length"):
            value = self.fields.get(key)
            implied = key == "byte_order" and value == "ABCD" and (
                self.width == 1 or self.type == "string")  # the default, said only for pairs
            if value is not None and not implied:
                items.append(f"{key}: {value}")
        return ["{" + ", ".join(items) + "}"]


def candidates_at(words: Sequence[int], i: int, start: int) -> list[Candidate]:
    """Every plausible reading that starts at index `i`, best first."""
    address = start + i
    word = words[i]
    out: list[Candidate] = []
    signed = word - 0x10000 if word & 0x8000 else word
    out.append(Candidate(address, 1, "uint16", _integer_score(word), word))
    if signed < 0:
        out.append(Candidate(address, 1, "int16", 0.6 if signed >= -10000 else 0.2, signed))
    bits = [b for b in range(16) if word >> b & 1]
    if bits and len(bits) <= 4 and word not in (0xFFFF,):
        spread = bits[-1] - bits[0]
        status = (word & 0x8000 and len(bits) >= 2) or (len(bits) >= 2 and spread >= 6)
        parts = tuple(Candidate(address, 1, "bool", 0, True, {"bit": b}) for b in bits)
        out.append(Candidate(address, 1, "bits", 0.7 if status else 0.3, word, parts=parts))
    high, low = word >> 8, word & 0xFF
    if high and low:
        small = high <= 0x1F and low <= 0x1F
        parts = (Candidate(address, 1, "uint8", 0, high, {"byte": "high"}),
                 Candidate(address, 1, "uint8", 0, low, {"byte": "low"}))
        out.append(Candidate(address, 1, "bytes", 0.75 if small else 0.15, word, parts=parts))
    text = _text_at(words, i)
    if text is not None:
        n, order, value, ended = text
        # text that ends (a NUL) is text; printable bytes running on may be floats (0x4366)
        score = 0.2 if n == 1 else 0.9 if ended and n >= 3 else 0.65
        out.append(Candidate(address, n, "string", score, value,
                             {"byte_order": order, "length": n}))
    if i + 1 < len(words):
        pair = list(words[i : i + 2])
        for order in ORDERS:
            score = _float_score(pair, order)
            if score:
                out.append(Candidate(address, 2, "float32", score,
                                     decode_registers(pair, "float32", order),
                                     {"byte_order": order}))
        for word_order in ("ABCD", "CDAB"):
            count = decode_registers(pair, "uint32", word_order)
            assert isinstance(count, int)
            if 0x10000 <= count < 0x8000000:  # a counter past 65535, high word small
                out.append(Candidate(address, 2, "uint32", 0.45, count,
                                     {"byte_order": word_order}))
    out.sort(key=lambda c: -c.score)
    return out


def best_layout(words: Sequence[int], start: int) -> list[tuple[Candidate, list[Candidate]]]:
    """The candidates that cover every register with the highest total plausibility, each
    with the other readings of its first register (best first) as alternatives. A device
    uses one byte order for all its values, so the layout is worked out once per byte order
    and the best one is kept (ABCD when they tie)."""
    n = len(words)
    options = [candidates_at(words, i, start) for i in range(n)]
    layout: list[Candidate] = []
    top = -1.0
    for order in ORDERS:
        word_order = "ABCD" if order in ("ABCD", "BADC") else "CDAB"
        allowed = [[c for c in cs if c.type not in ("float32", "uint32")
                    or c.fields["byte_order"] in (order, word_order)
                    and (c.type == "uint32" or c.fields["byte_order"] == order)]
                   for cs in options]
        total, covering = _cover(allowed, n)
        if total > top + 1e-9:
            top, layout = total, covering
    out = []
    for chosen in layout:
        i = chosen.address - start
        others = [c for c in options[i] if c is not chosen and i + c.width <= n
                  and c.score > 0.2][:3]
        out.append((chosen, others))
    return out


def _cover(options: list[list[Candidate]], n: int) -> tuple[float, list[Candidate]]:
    """The highest total of score x width over candidates covering 0..n-1 once each, and
    those candidates in address order (dynamic programming from the end)."""
    best: list[tuple[float, Candidate | None]] = [(0.0, None)] * (n + 1)
    for i in range(n - 1, -1, -1):
        choice: tuple[float, Candidate | None] = (-1.0, None)
        for c in options[i]:
            if i + c.width <= n:
                total = c.score * c.width + best[i + c.width][0]
                if total > choice[0] + 1e-9:
                    choice = (total, c)
        best[i] = choice
    out, i = [], 0
    while i < n:
        chosen = best[i][1]
        assert chosen is not None  # uint16 fits every register
        out.append(chosen)
        i += chosen.width
    return best[0][0], out


def forced_layout(words: Sequence[int], start: int, type_: str,
                  byte_order: str | None = None) -> list[Candidate]:
    """The registers read as `type_` (the most plausible byte order unless one is given)."""
    if type_ == "string":
        order = byte_order or "ABCD"
        value = decode_registers(list(words), "string", order, length=len(words))
        return [Candidate(start, len(words), "string", 1.0, value,
                          {"byte_order": order, "length": len(words)})]
    if type_ == "bool":
        out = []
        for i, word in enumerate(words):
            bits = [b for b in range(16) if word >> b & 1] or [0]
            parts = tuple(Candidate(start + i, 1, "bool", 0, bool(word >> b & 1), {"bit": b})
                          for b in bits)
            out.append(Candidate(start + i, 1, "bits", 1.0, word, parts=parts))
        return out
    if type_ in ("int8", "uint8"):
        out = []
        for i, word in enumerate(words):
            parts = tuple(Candidate(start + i, 1, type_, 0,
                                    decode_registers([word], type_, byte=b), {"byte": b})
                          for b in ("high", "low"))
            out.append(Candidate(start + i, 1, "bytes", 1.0, word, parts=parts))
        return out
    width = {"int16": 1, "uint16": 1, "float16": 1, "int32": 2, "uint32": 2, "float32": 2,
             "int64": 4, "uint64": 4, "float64": 4}[type_]
    orders = (byte_order,) if byte_order else ("ABCD",) if width == 1 else ORDERS
    out = []
    for i in range(0, len(words) - width + 1, width):
        chunk = list(words[i : i + width])
        ranked = sorted(orders, key=lambda o: -_forced_score(chunk, type_, o))
        order = ranked[0]
        out.append(Candidate(start + i, width, type_, 1.0,
                             decode_registers(chunk, type_, order), {"byte_order": order}))
    return out


def _forced_score(chunk: list[int], type_: str, order: str) -> float:
    value = decode_registers(chunk, type_, order)
    if type_.startswith("float"):
        return _magnitude_score(value) if isinstance(value, float) else 0.0
    assert isinstance(value, int)
    return 1.0 / (1.0 + math.log10(abs(value) + 1))  # small numbers: the likelier order


def _integer_score(word: int) -> float:
    if word == 0:
        return 0.5
    if word <= 1000:
        return 0.65
    if word < 10000:
        return 0.5
    return 0.35


def _float_score(pair: list[int], order: str) -> float:
    """How much `pair` looks like a float32 measurement in this order; 0 when not at all."""
    if not any(pair):
        return 0.0
    value = decode_registers(pair, "float32", order)
    if not isinstance(value, float) or value == 0:
        return 0.0
    score = _magnitude_score(value)
    if not score:
        return 0.0
    digits = _digits(value)
    if digits >= 7 and 0 < struct.unpack(">I", struct.pack(">f", value))[0] & 0xFFFF < 0x100:
        return 0.35  # 2.0000007: a small integer in the low word, not a measurement
    return 0.9 if digits <= 4 else 0.8 if digits <= 6 else 0.7


def _magnitude_score(value: float) -> float:
    return 1.0 if math.isfinite(value) and 1e-4 <= abs(value) < 1e8 else 0.0


def _digits(value: float) -> int:
    """Significant digits needed to write a float32 exactly."""
    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        if struct.pack(">f", float(f"{value:.{digits}g}")) == packed:
            return digits
    return 9


def _printable(byte: int) -> bool:
    return 0x20 <= byte <= 0x7E


def _text_at(words: Sequence[int], i: int) -> tuple[int, str, str, bool] | None:
    """(registers, byte order, text, ended) of ASCII text starting at index i, if any: whole
    registers of printable characters, then possibly one with a single character and a NUL;
    `ended` when a NUL ends it within the range."""
    n = i
    while n < len(words) and _printable(words[n] >> 8) and _printable(words[n] & 0xFF):
        n += 1
    order, ended = "ABCD", False
    if n < len(words) and n > i:
        nxt = words[n]
        if _printable(nxt >> 8) and nxt & 0xFF == 0:
            n, ended = n + 1, True
        elif _printable(nxt & 0xFF) and nxt >> 8 == 0:
            n, order, ended = n + 1, "BADC", True  # the odd character in the low byte: swapped
        elif nxt == 0:
            ended = True  # the padding after the text
    count = n - i
    if count == 0:
        return None
    text = decode_registers(list(words[i:n]), "string", order, length=count)
    assert isinstance(text, str)
    if sum(ch.isalpha() for ch in text) < min(2, len(text)):
        return None
    return count, order, text, ended


def text_of(word: int) -> str | None:
    """The two characters of a register, when both are printable."""
    high, low = word >> 8, word & 0xFF
    return chr(high) + chr(low) if _printable(high) and _printable(low) else None


def _fmt(value: Any) -> str:
    if value is None:
        return "nan/inf"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.7g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)
