"""Merge tags into the fewest read requests, and split a request a device refuses.

A request reads a contiguous range of one register kind of one unit. It may hold at most
`max_count` registers (bits) and may read through runs of at most `max_gap` registers that no
tag uses. Greedy from the lowest address is optimal here: the leftmost unread tag must start
some request, and starting that request exactly at the tag reaches at least as far as any
other choice (the proof is the usual exchange argument; `tests/test_planner.py` checks it
against a brute-force search).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Item(Generic[K]):
    """Something to read: `width` registers (bits) from `start`, named by `key`."""

    key: K
    start: int
    width: int

    @property
    def stop(self) -> int:
        return self.start + self.width


@dataclass
class Block(Generic[K]):
    """One read request: `count` registers (bits) from `start`, covering `items`."""

    start: int
    count: int
    items: list[Item[K]] = field(default_factory=list)

    @property
    def stop(self) -> int:
        return self.start + self.count

    def has_gaps(self) -> bool:
        """Whether the block reads registers no item uses."""
        end = self.start
        for item in sorted(self.items, key=lambda it: it.start):
            if item.start > end:
                return True
            end = max(end, item.stop)
        return False


def plan_blocks(items: Sequence[Item[K]], max_count: int, max_gap: int) -> list[Block[K]]:
    """The fewest requests covering every item whole, in address order."""
    if not items:
        return []
    too_wide = [it for it in items if it.width > max_count]
    if too_wide:
        raise ValueError(f"{too_wide[0].key!r} is {too_wide[0].width} wide, more than one "
                         f"request of {max_count} can read")
    order = sorted(items, key=lambda it: (it.start, it.stop))
    # regions: runs of used registers whose holes are all <= max_gap; no request crosses one
    region_stop: list[int] = []
    region_of: list[int] = []
    end = -(max_gap + 2)
    for it in order:
        if it.start - end > max_gap:
            region_stop.append(it.stop)
        else:
            region_stop[-1] = max(region_stop[-1], it.stop)
        region_of.append(len(region_stop) - 1)
        end = max(end, it.stop)

    covered = [False] * len(order)
    blocks: list[Block[K]] = []
    for pos, first in enumerate(order):
        if covered[pos]:
            continue
        limit = min(first.start + max_count, region_stop[region_of[pos]])
        block = Block[K](first.start, 0)
        stop = first.start
        for q in range(pos, len(order)):
            it = order[q]
            if it.start >= limit:
                break
            if not covered[q] and it.stop <= limit:
                covered[q] = True
                block.items.append(it)
                stop = max(stop, it.stop)
        block.count = stop - first.start
        blocks.append(block)
    return blocks


def split_block(block: Block[K], max_count: int) -> list[Block[K]] | None:
    """Two smaller requests for a block the device refused as an illegal address, or None
    when the block is a single item (then that item's own address is wrong).

    Unused registers the block read through are the usual culprit, so it is cut at its
    largest run of them; a block without unused registers is cut in half by items."""
    items = sorted(block.items, key=lambda it: (it.start, it.stop))
    cut, widest, end = 0, 0, items[0].stop
    for index in range(1, len(items)):
        hole = items[index].start - end
        if hole > widest:
            cut, widest = index, hole
        end = max(end, items[index].stop)
    if not cut:
        if len(items) <= 1:
            return None
        cut = len(items) // 2
    return [_block_of(items[:cut]), _block_of(items[cut:])]


def _block_of(items: list[Item[K]]) -> Block[K]:
    start = min(it.start for it in items)
    return Block(start, max(it.stop for it in items) - start, items)
