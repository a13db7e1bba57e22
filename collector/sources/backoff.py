"""The wait between attempts to reach something that failed: a start delay doubling to a cap.

Every reconnecting loop (a device, a broker, a server, the ledger, a crashed adapter) uses one
`Backoff`, so they all wait alike and report the same `retry_in_s` in health.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """`next()` gives the wait before the next attempt: `delay`, then twice that after each
    further failure, never more than `delay_max`; `reset()` after a success starts over.

    With `jitter` (0..1) each wait is shortened by a random part of up to that fraction, so
    many sources failing together do not all retry in the same instant."""

    __slots__ = ("delay", "delay_max", "jitter", "current", "_following", "_until", "_clock",
                 "_random")

    def __init__(self, delay: float, delay_max: float, *, jitter: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 random_fraction: Callable[[], float] = random.random):
        if delay < 0 or delay_max < delay:
            raise ValueError(f"backoff needs 0 <= delay <= delay_max (got {delay}, {delay_max})")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter is a fraction from 0 to 1 (got {jitter})")
        self.delay = delay
        self.delay_max = delay_max
        self.jitter = jitter
        self.current = 0.0  # the wait `next()` gave last; 0 after a reset
        self._following = delay
        self._until = 0.0
        self._clock = clock
        self._random = random_fraction

    def next(self) -> float:
        """The wait before the next attempt, in seconds; the one after is twice as long."""
        wait = self._following
        self._following = min(wait * 2, self.delay_max)
        if self.jitter:
            wait *= 1.0 - self.jitter * self._random()
        self.current = wait
        self._until = self._clock() + wait
        return wait

    def reset(self) -> None:
        """The attempt worked: the next failure waits `delay` again."""
        self._following = self.delay
        self.current = 0.0
        self._until = 0.0

    @property
    def retry_in(self) -> float:
        """Seconds left of the wait `next()` gave last (0 once it is over, or after a reset)."""
        return max(0.0, self._until - self._clock())

    def __repr__(self) -> str:
        return f"Backoff({self.delay:g}..{self.delay_max:g} s, current {self.current:g} s)"
