"""What the device behind sample.yaml holds and what each tag must read as.

The device memory is built independently of our codec: pymodbus' own
`convert_to_registers` gives the big-endian (ABCD) words, and the other byte orders are
made here by plain word reversal and byte swaps, so a symmetric bug in our codec's encoder
and decoder cannot hide."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient as _Client

SAMPLE = Path(__file__).resolve().parents[1] / "sample.yaml"
T = _Client.DATATYPE


def f32(x: float) -> float:
    """x as a float32 holds it."""
    return struct.unpack(">f", struct.pack(">f", x))[0]


def reorder(words: list[int], order: str) -> list[int]:
    if order in ("CDAB", "DCBA"):
        words = words[::-1]
    if order in ("BADC", "DCBA"):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def words(value: object, datatype: Any, order: str = "ABCD") -> list[int]:
    return reorder(_Client.convert_to_registers(value, datatype), order)  # type: ignore[arg-type]


def f16(x: float, order: str = "ABCD") -> list[int]:
    return reorder([struct.unpack(">H", struct.pack(">e", x))[0]], order)


# (register kind, address, words or bits), and the value each tag must read as
MEMORY: list[tuple[str, int, list]] = []
EXPECTED: dict[str, object] = {}


def put(kind: str, address: int, data: list, **expected: object) -> None:
    MEMORY.append((kind, address, data))
    EXPECTED.update(expected)


put("holding", 0, [0xFFFF], u16=65535)
put("holding", 1, words(-32768, T.INT16), i16=-32768)
put("holding", 2, words(-2, T.INT16, "BADC"), i16_badc=-2)
put("holding", 3, [0x3412], u16_badc=0x1234)
put("holding", 4, f16(1.5), f16=1.5)
put("holding", 5, f16(-0.25, "BADC"), f16_badc=-0.25)
put("holding", 6, [0x7F80], i8_low=-128)             # high byte must be ignored
put("holding", 7, [0xFF01], i8_high=-1)
put("holding", 8, [0x07C8], mode_low=200, mode_high=7)
put("holding", 10, [0x8005], door_open=True, guard_closed=False, estop=True)
put("holding", 11, [2], running=True)
I32 = {"ABCD": -2147483648, "CDAB": 2147483647, "BADC": -123456789, "DCBA": 305419896}
U32 = {"ABCD": 4294967295, "CDAB": 0x01020304, "BADC": 3000000000, "DCBA": 1}
F32 = {"ABCD": 229.7, "CDAB": -0.0, "BADC": 3.4028234663852886e38, "DCBA": 1.1754943508222875e-38}
I64 = {"ABCD": -(2**63), "CDAB": 2**63 - 1, "BADC": -1234567890123, "DCBA": 1}
U64 = {"ABCD": 2**64 - 1, "CDAB": 0x0102030405060708, "BADC": 12345678901234567890, "DCBA": 0}
F64 = {"ABCD": math.pi, "CDAB": -1e300, "BADC": 5e-324, "DCBA": 2.5}
for i, order in enumerate(("ABCD", "CDAB", "BADC", "DCBA")):
    low = order.lower()
    put("holding", 12 + 2 * i, words(I32[order], T.INT32, order), **{f"i32_{low}": I32[order]})
    put("holding", 20 + 2 * i, words(U32[order], T.UINT32, order), **{f"u32_{low}": U32[order]})
    put("holding", 28 + 2 * i, words(F32[order], T.FLOAT32, order),
        **{f"f32_{low}": f32(F32[order])})
    put("holding", 36 + 4 * i, words(I64[order], T.INT64, order), **{f"i64_{low}": I64[order]})
    put("holding", 52 + 4 * i, words(U64[order], T.UINT64, order), **{f"u64_{low}": U64[order]})
    put("holding", 68 + 4 * i, words(F64[order], T.FLOAT64, order), **{f"f64_{low}": F64[order]})
put("holding", 84, words("PRESS-07", T.STRING), label="PRESS-07")
put("holding", 88, words("OK", T.STRING) + [0, 0, 0], short_label="OK")
put("holding", 92, reorder(words("Hi", T.STRING), "BADC") + [0], label_swapped="Hi")
put("holding", 100, [655], oil_temp=655 * 0.1 - 40)
put("holding", 101, [0xFFFF])  # flow: its nan_value
put("holding", 102, words(-3, T.INT16), level=0.0)  # -0.3 clamped to clamp_min
put("holding", 103, [3500], speed=3000)  # an int clamped to a whole bound stays an int
put("holding", 200, words(2.5, T.FLOAT32), setpoint=2.5)
put("input", 0, words(229.7, T.FLOAT32), voltage_l1=f32(229.7))
put("input", 2, words(math.nan, T.FLOAT32))
put("input", 4, words(math.inf, T.FLOAT32))
put("coil", 0, [True])
put("coil", 5, [True])
put("discrete", 3, [True])
EXPECTED.update(pump_on=True, valve_open=True, part_present=True)
BAD_TAGS = {"meter_nan", "meter_inf", "flow"}
SAMPLE_REQUESTS = 5  # holding 0..100 and 200, input 0..5, coil 0..5, discrete 3


def same(a: object, b: object) -> bool:
    """Equal values, telling -0.0 from 0.0 and comparing scaled floats closely."""
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1, a) == math.copysign(1, b) and math.isclose(a, b, rel_tol=1e-12)
    return type(a) is type(b) and a == b


async def load(device: object, unit: int = 1) -> None:
    """Write the golden memory into a `peers.Device`."""
    for kind, address, data in MEMORY:
        await device.set(kind, address, data, unit=unit)  # type: ignore[attr-defined]
