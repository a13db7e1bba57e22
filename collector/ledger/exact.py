"""Integers kept exact to 64 bits, signed and unsigned, beside the double every number has.

`value` (a double) holds integers exactly only up to 2^53: an energy meter's int64 or uint64
counter would come back rounded. An integer reading therefore also stores its value in
`value_int`, a 64-bit signed column on both databases. Unsigned values of 2^63 and above do not
fit it: SQLite keeps them as their decimal digits (a BLOB, which an INTEGER column stores as
given), PostgreSQL as the value minus 2^64; such a row is told apart by its double, which is
positive while the stored integer is negative. `exact_value` undoes both.

Integers beyond 64 bits are stored as their nearest double, as before (no adapter makes them:
the MQTT adapter refuses them with a message).
"""

from __future__ import annotations

from collections.abc import Callable

from collector.model import Value

INT64_MIN = -(2**63)
INT64_END = 2**63  # first value that needs the unsigned form
UINT64_END = 2**64
DOUBLE_EXACT = 2**53  # integers up to this size are exact in a double

WideInt = Callable[[int], int | bytes]


def wide_sqlite(value: int) -> bytes:
    """A uint64 of 2^63 or more as SQLite keeps it: its decimal digits."""
    return str(value).encode()


def wide_postgres(value: int) -> int:
    """A uint64 of 2^63 or more as PostgreSQL keeps it: minus 2^64 (the double stays positive)."""
    return value - UINT64_END


def stored_int(value: int, wide: WideInt) -> int | bytes | None:
    """What `value_int` holds for an integer reading; None beyond 64 bits."""
    if INT64_MIN <= value < INT64_END:
        return value
    if INT64_END <= value < UINT64_END:
        return wide(value)
    return None


def exact_value(value: float | None, value_int: int | bytes | None) -> Value:
    """The reading's number: its exact integer when it has one, else the double."""
    if value_int is None:
        return value
    if value_int.__class__ is bytes:
        return int(value_int)
    if value_int < 0 and value is not None and value > 0:  # type: ignore[operator]
        return value_int + UINT64_END  # type: ignore[operator]
    return value_int  # type: ignore[return-value]


def may_be_inexact(low: float | None, high: float | None, values: int) -> bool:
    """Whether statistics summed in doubles over `values` numbers within [low, high] may have
    rounded an integer (a value or a running sum past 2^53)."""
    if not values or low is None or high is None:
        return False
    return max(abs(low), abs(high)) * values >= DOUBLE_EXACT
