"""How a simulated machine behaves: it runs, idles and stops at random, like a real one.

A small Markov chain with a dwell time per state (a press does not stop for one second), plus
first-order lags with noise for the analogue signals, so values move like sensors, not dice.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

RUNNING = "running"
IDLE = "idle"
STOPPED = "stopped"


@dataclass
class Behaviour:
    """The machine's current state; `step(now)` moves on once the dwell time is over."""

    rng: random.Random
    # state -> (shortest, longest) seconds spent in it before moving on
    dwell: dict[str, tuple[float, float]]
    # state -> {next state: weight}
    moves: dict[str, dict[str, float]]
    state: str = RUNNING
    since: float = 0.0
    until: float = 0.0
    changes: int = 0
    history: list[tuple[float, str]] = field(default_factory=list)

    def start(self, now: float, state: str | None = None) -> None:
        self._enter(state or self.state, now)

    def step(self, now: float) -> str:
        if now >= self.until:
            options = self.moves[self.state]
            nxt = self.rng.choices(list(options), weights=list(options.values()))[0]
            self._enter(nxt, now)
        return self.state

    def _enter(self, state: str, now: float) -> None:
        low, high = self.dwell[state]
        self.state, self.since = state, now
        self.until = now + self.rng.uniform(low, high)
        self.changes += 1
        self.history = [*self.history[-49:], (now, state)]


def standard_behaviour(rng: random.Random, pace: float = 1.0) -> Behaviour:
    """Mostly running, short idle spells, the odd stop; `pace` scales every dwell time."""
    return Behaviour(
        rng=rng,
        dwell={RUNNING: (40 * pace, 150 * pace), IDLE: (10 * pace, 45 * pace),
               STOPPED: (15 * pace, 60 * pace)},
        moves={RUNNING: {IDLE: 0.7, STOPPED: 0.3}, IDLE: {RUNNING: 0.75, STOPPED: 0.25},
               STOPPED: {RUNNING: 0.6, IDLE: 0.4}},
    )


def approach(value: float, target: float, time_constant: float, dt: float) -> float:
    """First-order lag: how a temperature or a motor current follows its set point."""
    if time_constant <= 0:
        return target
    return target + (value - target) * math.exp(-dt / time_constant)


def noisy(rng: random.Random, value: float, sigma: float) -> float:
    return value + rng.gauss(0.0, sigma)


class Ticking(Protocol):
    def tick(self, now: float, dt: float) -> None: ...


async def tick_forever(model: Ticking, publish: Callable[[], Awaitable[None]], period: float) -> None:
    """Advance a machine model every `period` seconds and publish what it shows."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        await asyncio.sleep(period)
        now = loop.time()
        model.tick(now, now - last)
        last = now
        await publish()
