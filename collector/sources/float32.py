"""A 32-bit float as the device meant it: the shortest decimal that reads back as the same
float32 (229.7, not 229.6999969482422), so that one sensor gives the same number whether it
is read over Modbus, OPC UA or MQTT.

Sensors repeat their values, so the answers are kept in a bounded table: most readings cost
one dictionary lookup.
"""

from __future__ import annotations

import struct

_PACK = struct.Struct("<f").pack
_NORMAL = 1.1754943508222875e-38  # the smallest normal float32: below it, fewer digits suffice
# six digits first: when a decimal of six digits or fewer reads back, `:.6g` (trailing zeros
# dropped) is that decimal, as a normal float32 is closer to it than half a step of six digits
_DIGITS = (6, 7, 8, 9)
_SUBNORMAL_DIGITS = tuple(range(1, 10))
_KEPT = 65_536  # distinct values remembered (~6 MB at most); the table starts over beyond
_known: dict[float, float] = {}


def float32_table() -> dict[float, float]:
    """The values already worked out (value -> shortest), for a decoder to look up first."""
    return _known


def shortest_float32(value: float) -> float:
    """The shortest decimal (6 to 9 significant digits) that packs to the same float32 as
    `value`; NaN and infinities unchanged."""
    found = _known.get(value)
    if found is not None:
        return found
    if not value or value != value or value - value != 0.0:  # ±0 (equal as keys), NaN, ±inf
        return value
    target = _PACK(value)
    short = value
    for digits in _DIGITS if abs(value) >= _NORMAL else _SUBNORMAL_DIGITS:
        candidate = float(f"{value:.{digits}g}")
        if _PACK(candidate) == target:
            short = candidate
            break
    if len(_known) >= _KEPT:
        _known.clear()  # emptied in place: decoders hold this very table
    _known[value] = short
    return short
