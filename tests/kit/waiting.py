"""Waiting for a peer or an adapter to reach a state, robust on a loaded machine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def wait_for(condition: Callable[[], Any], within: float = 15.0, what: str = "condition",
                   step: float = 0.02) -> Any:
    """Poll until `condition()` is truthy and return its value; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {within} s")
        await asyncio.sleep(step)
