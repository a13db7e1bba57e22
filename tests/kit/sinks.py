"""A sink that stands in for the pipeline: keeps what an adapter hands over, and can delay or
withhold durability for the MQTT acknowledgement tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from collector.model import Reading


class Sink:
    """Collects an adapter's readings; `wait=True` puts are delayed by `durable_delay` and
    never return while `durable` is cleared."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.batches = 0
        self.waited = 0
        self.durable_delay = 0.0
        self.durable = asyncio.Event()
        self.durable.set()

    async def put(self, readings: Sequence[Reading], *, wait: bool = False) -> None:
        if wait:
            self.waited += 1
            if self.durable_delay:
                await asyncio.sleep(self.durable_delay)
            await self.durable.wait()
        self.readings.extend(readings)
        self.batches += 1

    def of(self, tag: str, machine: str | None = None) -> list[Reading]:
        return [r for r in self.readings if r.tag == tag and (machine is None or r.machine == machine)]

    def latest(self) -> dict[str, Reading]:
        """The newest reading of every tag."""
        return {r.tag: r for r in self.readings}

    def last(self, tag: str) -> Reading:
        """The newest reading of `tag` (fails the test when there is none yet)."""
        found = self.of(tag)
        assert found, f"no reading of {tag!r} yet"
        return found[-1]
