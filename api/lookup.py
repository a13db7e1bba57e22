"""Turning a machine id and tag names into ledger series, with 404s that name what is missing."""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence

from fastapi import HTTPException

from api.boundary import LedgerView, RuntimeView
from collector.ledger import Series

SERIES_TTL = 2.0  # seconds a machine's series list is reused; new tags show up after this

_series_cache: weakref.WeakKeyDictionary[LedgerView, dict[str, tuple[float, list[Series]]]] = (
    weakref.WeakKeyDictionary())


class NotFound(HTTPException):
    def __init__(self, detail: str):
        super().__init__(404, detail)


def storable(name: str) -> bool:
    """Could the ledger hold this id at all? (PostgreSQL refuses NUL in text parameters.)"""
    return 0 < len(name) <= 64 and "\x00" not in name


def unknown_machine(machine: str) -> NotFound:
    return NotFound(f"machine {machine!r} not found (GET /api/v1/machines lists them)")


async def machine_exists(rt: RuntimeView, machine: str) -> bool:
    if any(m.id == machine for m in rt.config.machines):
        return True
    return any(row["id"] == machine for row in await rt.ledger.catalogue.machines())


async def machine_series(rt: RuntimeView, machine: str) -> list[Series]:
    """Every series of a machine; 404 when the machine is neither configured nor stored."""
    if not storable(machine):
        raise unknown_machine(machine)
    found = await cached_series(rt.ledger, machine)
    if not found and not await machine_exists(rt, machine):
        raise unknown_machine(machine)
    return found


async def cached_series(ledger: LedgerView, machine: str | None,
                        fresh: bool = False) -> list[Series]:
    """A machine's series (every series for None), reused for SERIES_TTL seconds: the list
    is read by every request and changes only when a tag is added."""
    cache = _series_cache.setdefault(ledger, {})
    key = "\x00" if machine is None else machine
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and not fresh and now < hit[0]:
        return hit[1]
    found = await ledger.catalogue.series(machine)
    if found:  # a series still without a kind gets one with its first value: look again soon
        ttl = SERIES_TTL if all(s.kind for s in found) else SERIES_TTL / 8
        cache[key] = (now + ttl, found)
    return found


async def resolve_series(rt: RuntimeView, machine: str, tags: Sequence[str]) -> list[Series]:
    """The series for `tags` in the order asked (all of the machine's when none is given)."""
    found = await machine_series(rt, machine)
    if not tags:
        return found
    by_tag = {s.tag: s for s in found}
    missing = [t for t in tags if t not in by_tag]
    if missing:  # perhaps created since the list was cached
        by_tag = {s.tag: s for s in await cached_series(rt.ledger, machine, fresh=True)}
        missing = [t for t in tags if t not in by_tag]
    if missing:
        known = ", ".join(sorted(by_tag)[:20]) or "none yet"
        more = ", ..." if len(by_tag) > 20 else ""
        names = ", ".join(repr(t) for t in missing[:5])
        raise NotFound(f"tag {names} not found on machine {machine!r} (its tags: {known}{more})")
    return [by_tag[t] for t in tags]


def tag_descriptions(rt: RuntimeView) -> dict[tuple[str, str], str]:
    """Descriptions written in the config, by (machine, tag)."""
    out: dict[tuple[str, str], str] = {}
    for m in rt.config.machines:
        for source in m.sources:
            for tag in source.tags:
                if tag.description:
                    out[(m.id, tag.name)] = tag.description
    return out
