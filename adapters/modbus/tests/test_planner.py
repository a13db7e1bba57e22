"""The planner reaches the true minimum number of requests (checked against a brute-force
search on generated tag sets), never breaks the limits, and splits refused blocks sensibly."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.modbus.planner import Block, Item, plan_blocks, split_block


def used(items: list[Item[int]]) -> set[int]:
    return {a for it in items for a in range(it.start, it.stop)}


def valid(start: int, stop: int, items: list[Item[int]], max_count: int, max_gap: int) -> bool:
    """A request is valid when it fits and reads no run of unused registers over max_gap."""
    if stop - start > max_count:
        return False
    run, taken = 0, used(items)
    for address in range(start, stop):
        run = 0 if address in taken else run + 1
        if run > max_gap:
            return False
    return True


def brute_force_minimum(items: list[Item[int]], max_count: int, max_gap: int) -> int:
    """Smallest set of valid requests covering every item whole, by exhaustive search."""
    starts = sorted({it.start for it in items})
    stops = sorted({it.stop for it in items})
    candidates = []
    for a in starts:
        for b in stops:
            if b > a and valid(a, b, items, max_count, max_gap):
                covers = frozenset(i for i, it in enumerate(items) if a <= it.start and it.stop <= b)
                if covers:
                    candidates.append(covers)
    everything = frozenset(range(len(items)))
    for k in range(1, len(items) + 1):
        for combo in combinations(candidates, k):
            if frozenset().union(*combo) == everything:
                return k
    raise AssertionError("no cover found")


items_strategy = st.lists(
    st.tuples(st.integers(0, 60), st.sampled_from([1, 1, 2, 2, 4, 3])), min_size=1, max_size=7,
).map(lambda pairs: [Item(i, a, w) for i, (a, w) in enumerate(pairs)])


def check_plan(blocks: list[Block[int]], items: list[Item[int]], max_count: int,
               max_gap: int) -> None:
    seen = sorted(it.key for b in blocks for it in b.items)
    assert seen == sorted(it.key for it in items), "every item exactly once"
    for b in blocks:
        assert 1 <= b.count <= max_count
        assert all(b.start <= it.start and it.stop <= b.stop for it in b.items)
        assert min(it.start for it in b.items) == b.start and max(it.stop for it in b.items) == b.stop
        assert valid(b.start, b.stop, items, max_count, max_gap)


@settings(max_examples=300, deadline=None)
@given(items=items_strategy, max_count=st.integers(4, 20), max_gap=st.integers(0, 8))
def test_request_count_is_the_true_minimum(items: list[Item[int]], max_count: int,
                                           max_gap: int) -> None:
    blocks = plan_blocks(items, max_count, max_gap)
    check_plan(blocks, items, max_count, max_gap)
    assert len(blocks) == brute_force_minimum(items, max_count, max_gap)


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(st.integers(0, 65000), st.sampled_from([1, 2, 4, 10])),
                      min_size=1, max_size=400),
       max_gap=st.integers(0, 40))
def test_large_sets_respect_the_limits(pairs: list[tuple[int, int]], max_gap: int) -> None:
    items = [Item(i, a, w) for i, (a, w) in enumerate(pairs)]
    blocks = plan_blocks(items, 125, max_gap)
    seen = sorted(it.key for b in blocks for it in b.items)
    assert seen == list(range(len(items)))
    assert all(b.count <= 125 for b in blocks)


def test_known_layouts() -> None:
    # 100 float32 back to back: 200 registers need 2 requests of <= 125
    floats = [Item(i, 2 * i, 2) for i in range(100)]
    assert [(b.start, b.count) for b in plan_blocks(floats, 125, 0)] == [(0, 124), (124, 76)]
    # a float32 is never cut in half at the 125 boundary
    odd = [Item(0, 0, 1)] + [Item(i, 2 * i - 1, 2) for i in range(1, 70)]
    assert all(it.stop <= b.stop for b in plan_blocks(odd, 125, 0) for it in b.items)
    # gaps: read through 16 unused registers, not 17
    assert len(plan_blocks([Item(0, 0, 1), Item(1, 17, 1)], 125, 16)) == 1
    assert len(plan_blocks([Item(0, 0, 1), Item(1, 18, 1)], 125, 16)) == 2
    # several tags on one register (bits, bytes) share it
    same = [Item(i, 10, 1) for i in range(5)]
    assert [(b.start, b.count, len(b.items)) for b in plan_blocks(same, 125, 0)] == [(10, 1, 5)]
    # bits: 2000 per request
    coils = [Item(i, i, 1) for i in range(2500)]
    assert [b.count for b in plan_blocks(coils, 2000, 0)] == [2000, 500]


def test_too_wide_item_is_rejected() -> None:
    with pytest.raises(ValueError, match="more than one request of 10"):
        plan_blocks([Item("s", 0, 11)], 10, 0)


def test_split_cuts_at_the_widest_hole() -> None:
    # tags at 0..9 and 20..29 read as one block through the hole 10..19 (max_gap 16)
    items = [Item(i, i, 1) for i in range(10)] + [Item(i, i + 10, 1) for i in range(10, 20)]
    (block,) = plan_blocks(items, 125, 16)
    parts = split_block(block, 125)
    assert parts is not None
    assert [(p.start, p.count) for p in parts] == [(0, 10), (20, 10)]
    # small holes stay read through; the cut goes into the widest one
    items = [Item(a, a, 1) for a in (0, 3, 6, 9, 20, 23)]
    (block,) = plan_blocks(items, 125, 16)
    parts = split_block(block, 125)
    assert parts is not None
    assert [(p.start, p.count) for p in parts] == [(0, 10), (20, 4)]


def test_split_halves_a_block_without_gaps_down_to_single_items() -> None:
    items = [Item(i, 2 * i, 2) for i in range(8)]
    (block,) = plan_blocks(items, 125, 0)
    parts = split_block(block, 125)
    assert parts is not None and [(p.start, p.count) for p in parts] == [(0, 8), (8, 8)]
    single = plan_blocks([Item(0, 5, 2)], 125, 0)[0]
    assert split_block(single, 125) is None
    # two tags on the same register: halves, then nothing more to split
    pair = plan_blocks([Item(0, 5, 1), Item(1, 5, 1)], 125, 0)[0]
    halves = split_block(pair, 125)
    assert halves is not None and [len(p.items) for p in halves] == [1, 1]
