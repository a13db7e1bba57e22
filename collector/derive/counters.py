"""Parts (and energy) from counter tags: the increase between consecutive good readings.

A drop is a wrap when the counter's width explains it (it was in the top quarter of its range
and is now in the bottom quarter), noise when it is smaller than `reset_below`, otherwise a
reset: the counter started again from zero, so its new value is what was made since.
"""

from __future__ import annotations

from typing import Literal

from collector.model import Value

Event = Literal["wrap", "reset", "noise"] | None


class CounterTracker:
    """The increase of one cumulative counter, reading by reading."""

    __slots__ = ("modulus", "reset_below", "ref")

    def __init__(self, width: int | None = None, reset_below: float | None = None,
                 ref: float | None = None):
        self.modulus = 1 << width if width else None
        self.reset_below = reset_below
        self.ref = ref  # the value the next increase is measured from

    def update(self, value: Value) -> tuple[float, Event]:
        """(increase, what happened) for the next good reading's value."""
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return 0, None
        modulus = self.modulus
        if modulus is not None and (isinstance(value, int) or value.is_integer()):
            value = int(value) % modulus  # a signed counter read as its unsigned bits
        ref = self.ref
        if ref is None:
            self.ref = value
            return 0, None
        if value >= ref:
            self.ref = value
            return value - ref, None
        if (modulus is not None and ref >= modulus * 3 // 4 and value < modulus // 4
                and isinstance(value, int)):
            self.ref = value
            return value + modulus - int(ref), "wrap"
        if self.reset_below is not None and ref - value < self.reset_below:
            return 0, "noise"  # measured from the higher value until the counter passes it
        self.ref = value
        return value, "reset"


class PulseTracker:
    """One part per rising edge of a bool (or 0/1) tag."""

    __slots__ = ("ref",)

    def __init__(self, ref: bool | None = None):
        self.ref = ref

    def update(self, value: Value) -> tuple[float, Event]:
        if isinstance(value, str) or value is None or value != value:
            return 0, None
        high = bool(value)
        rising = high and self.ref is False
        self.ref = high
        return (1, None) if rising else (0, None)


Tracker = CounterTracker | PulseTracker
