"""The tags of a source grouped by node, and the hot path from DataValues to Readings.

Several tags may name the same node (one per array element), so the server is asked once per
distinct node: an `Item` is one monitored item / one entry of a Read request, and fans out to
its tags. Conversion stays in one tight loop because 5,000 notifications a second pass here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from asyncua import ua

from collector.model import (
    BAD,
    GOOD,
    UNCERTAIN,
    Quality,
    Reading,
    now_us,
    us_from_datetime,
)
from collector.sources.float32 import shortest_float32
from collector.sources.normalise import Normaliser, normaliser_of

from .config import OpcUaSourceConfig, OpcUaTagConfig
from .publish_decoder import Change
from .values import ValueProblem, convert, quality_of, status_name

_SEVERITY = (GOOD, UNCERTAIN, BAD, BAD)
_FLOAT = 10  # VariantType.Float


# changes the server keeps per item between two publishes: absorbs bursts and late publishes,
# so a change is not overwritten by the next one before it is sent
DEFAULT_QUEUE_SIZE = 10


@dataclass
class Binding:
    tag: OpcUaTagConfig
    name: str
    index: int | None
    normalise: Normaliser | None  # None: the value is stored as it is


@dataclass
class Item:
    """One distinct node (or browse path) of the source and the tags that read it."""

    key: str  # the text the tags used to name the node
    tags: list[Binding]
    sampling_interval: float  # seconds
    queue_size: int
    deadband: float | None  # absolute, in raw units of the node
    node_id: ua.NodeId | None = None  # known once connected (browse paths, nsu= are resolved then)
    last_ts: int = 0  # newest timestamp handed over, so an outage marker sorts after it
    floor_ts: int = 0  # time of the last outage marker; older source timestamps are re-stamped
    problem: str | None = None  # why this item cannot give values (reported once)
    status: str | None = None  # last non-good status name, for health details
    extra: dict[str, object] = field(default_factory=dict)


def build_items(source: OpcUaSourceConfig) -> list[Item]:
    """Group the source's tags by the node they name, keeping configuration order."""
    items: dict[str, Item] = {}
    for tag in source.tags:
        key = tag.node if tag.node is not None else f"path:{tag.browse_path}"
        sampling = tag.sampling_interval if tag.sampling_interval is not None else source.interval
        deadband = None
        if tag.deadband:
            deadband = tag.deadband / abs(tag.scale) if tag.scale else None
        binding = Binding(tag, tag.name, tag.index, normaliser_of(tag))
        item = items.get(key)
        if item is None:
            items[key] = Item(key, [binding], sampling, tag.queue_size or DEFAULT_QUEUE_SIZE, deadband)
            continue
        item.tags.append(binding)
        item.sampling_interval = min(item.sampling_interval, sampling)
        item.queue_size = max(item.queue_size, tag.queue_size or DEFAULT_QUEUE_SIZE)
        # a shared node is filtered by the smallest deadband, or not at all if one tag wants every change
        item.deadband = None if item.deadband is None or deadband is None else min(item.deadband, deadband)
    return list(items.values())


class ReadingMaker:
    """Turns DataValues of items into Readings; reports per-item problems through `on_problem`."""

    def __init__(self, machine: str, items: list[Item], on_problem: Callable[[Item, str], None],
                 statuses: dict[str, str]):
        self.machine = machine
        self.items = items
        self.on_problem = on_problem
        self.statuses = statuses  # tag -> last non-good status name (health details)

    def make(self, pairs: Iterable[tuple[int, ua.DataValue]], received_us: int) -> list[Reading]:
        """Readings for (item index, DataValue) pairs; unknown indexes are ignored."""
        out: list[Reading] = []
        append = out.append
        items = self.items
        machine = self.machine
        n = len(items)
        for handle, dv in pairs:
            if handle >= n:
                continue
            item = items[handle]
            status = dv.StatusCode
            code = None if status is None or status.value == 0 else status.value
            quality = GOOD if code is None else quality_of(status)
            stamp = dv.SourceTimestamp or dv.ServerTimestamp
            ts = us_from_datetime(stamp) if stamp is not None else received_us
            if ts <= item.floor_ts:
                ts = received_us  # first value after an outage: confirmed now, not back then
            if ts > item.last_ts:
                item.last_ts = ts
            if quality is not GOOD or item.status is not None:
                self._note_status(item, status, quality)
            variant = dv.Value
            for b in item.tags:
                if quality is BAD:
                    append(Reading(machine, b.name, ts, None, BAD, code))
                    continue
                try:
                    value = convert(variant, b.index)
                except ValueProblem as exc:
                    self.on_problem(item, f"tag {b.name!r} ({item.key}): {exc}")
                    append(Reading(machine, b.name, ts, None, BAD))
                    continue
                if b.normalise is not None:
                    value = b.normalise(value)
                    if value is None:  # the tag's nan_value (or no value at all)
                        append(Reading(machine, b.name, ts, None, BAD, code))
                        continue
                append(Reading(machine, b.name, ts, value, quality, code))
        return out

    def make_scalars(self, changes: Iterable[Change], received_us: int) -> list[Reading]:
        """Readings from the lean decoder's tuples (scalars only; see publish_decoder.py)."""
        out: list[Reading] = []
        append = out.append
        items = self.items
        machine = self.machine
        n = len(items)
        for handle, value, vtype, status, source, server in changes:
            if handle >= n:
                continue
            item = items[handle]
            quality = GOOD if status == 0 else _SEVERITY[(status >> 30) & 3]
            ts = source or server or received_us
            if ts <= item.floor_ts:
                ts = received_us
            if ts > item.last_ts:
                item.last_ts = ts
            if quality is not GOOD or item.status is not None:
                self._note_status(item, ua.StatusCode(status), quality)  # type: ignore[arg-type]  # asyncua annotates UInt32, takes an int
            if vtype == _FLOAT and value is not None:
                value = shortest_float32(value)
            code = status or None  # kept with the reading unless plain good
            for b in item.tags:
                if quality is BAD:
                    append(Reading(machine, b.name, ts, None, BAD, code))
                elif b.index is not None:
                    self.on_problem(item, f"tag {b.name!r} ({item.key}): 'index: {b.index}' is set but the "
                                    "node holds a single value; remove 'index'")
                    append(Reading(machine, b.name, ts, None, BAD))
                elif b.normalise is not None:
                    normalised = b.normalise(value)
                    append(Reading(machine, b.name, ts, normalised,
                                   quality if normalised is not None else BAD, code))
                else:
                    append(Reading(machine, b.name, ts, value, quality, code))
        return out

    def _note_status(self, item: Item, status: ua.StatusCode | None, quality: Quality) -> None:
        if quality is GOOD:
            item.status = None
            for b in item.tags:
                self.statuses.pop(b.name, None)
            return
        item.status = status_name(status)
        for b in item.tags:
            self.statuses[b.name] = item.status

    def outage(self, items: Iterable[Item] | None = None) -> list[Reading]:
        """One BAD reading per tag, stamped after anything already handed over for it."""
        now = now_us()
        out: list[Reading] = []
        for item in self.items if items is None else items:
            ts = max(now, item.last_ts + 1)
            item.last_ts = item.floor_ts = ts
            out.extend(Reading(self.machine, b.name, ts, None, BAD) for b in item.tags)
        return out
