"""Polls one Modbus source on a fixed-rate schedule and hands its readings to the pipeline.

Each scan reads the planned blocks of every unit and register kind, decodes each answer
(`BlockReader`: a block of plain numbers in one `struct` call, otherwise each tag with its
precompiled decoder), and passes the values through the tags' normalisers (sentinel, scale,
offset, clamp). Failures stay inside the source: a unit
that does not answer is skipped for the rest of the scan, a refused block is split and the
split kept, a lost connection is retried with capped exponential backoff, and every tag that
stops reading gets exactly one BAD reading so the ledger shows the gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from pymodbus.exceptions import ConnectionException, ModbusIOException

from adapters.base import AdapterContext
from collector.model import BAD, GOOD, Reading, good_readings, now_us
from collector.sources.normalise import normaliser_of

from .codec import BIT_KINDS, FLOAT_TYPES, BlockDecoder, Decoder, make_block_decoder, make_decoder
from .config import ModbusSourceConfig, ModbusTagConfig
from .link import GarbledAnswer, Link, acquire_link, release_link
from .planner import Block, Item, plan_blocks, split_block

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "device failure", 5: "acknowledge", 6: "device busy", 8: "memory parity error",
    10: "gateway path unavailable", 11: "gateway target did not respond",
}  # fmt: skip
JITTER_SAMPLES = 3600
GARBLED = -2  # the code of a block whose answer could not be decoded


class CompiledTag:
    """A tag reduced to what a scan needs: where it is, how to decode and normalise it."""

    __slots__ = ("name", "kind", "unit", "address", "width", "decode", "normalise", "config")

    def __init__(self, tag: ModbusTagConfig, unit: int):
        self.config = tag
        self.name = tag.name
        self.kind = tag.register
        self.unit = unit
        self.address = tag.address
        self.width = tag.width
        self.normalise = normaliser_of(tag)  # None: the decoded value is stored as it is
        self.decode: Decoder | None = None
        if tag.register not in BIT_KINDS:
            self.decode = make_decoder(tag.value_type, tag.byte_order, byte=tag.byte or "low",
                                       bit=tag.bit, length=tag.length)

    def __repr__(self) -> str:
        return f"{self.name}@{self.kind}:{self.address}"


Plan = dict[tuple[int, str], list[Block[CompiledTag]]]


class BlockReader:
    """A block's tags as one scan decodes them: every value of the answer at once (one
    `struct` call for a block of plain numbers, `make_block_decoder`; otherwise each tag's own
    decoder), then the normalisers of the tags that have one."""

    __slots__ = ("block", "names", "decode", "normalisers", "plain")

    def __init__(self, block: Block[CompiledTag], kind: str):
        self.block = block  # kept alive with its reader (readers are found by the block's id)
        tags = [item.key for item in block.items]
        self.names = [tag.name for tag in tags]
        start = block.start
        whole: BlockDecoder | None = None
        if kind in BIT_KINDS:
            offsets = [tag.address - start for tag in tags]
            whole = lambda data: [bool(data[i]) for i in offsets]  # noqa: E731
        else:
            whole = make_block_decoder(
                [(tag.config.value_type, tag.config.byte_order, tag.address - start)
                 for tag in tags], block.count)
        if whole is None:
            pairs = [(tag.decode, tag.address - start) for tag in tags]
            whole = lambda data: [decode(data, i) for decode, i in pairs]  # type: ignore[misc]  # noqa: E731
        self.decode = whole
        self.normalisers = [tag.normalise for tag in tags]
        # no normaliser and no value that can be None (a float that is not finite): the
        # readings of an answer are built in one pass
        self.plain = not any(self.normalisers) and all(
            tag.kind in BIT_KINDS or tag.config.value_type not in FLOAT_TYPES for tag in tags)


def build_plan(source: ModbusSourceConfig) -> Plan:
    """Blocks per (unit, register kind), fewest requests first."""
    groups: dict[tuple[int, str], list[Item[CompiledTag]]] = {}
    for tag in source.tags:
        compiled = CompiledTag(tag, source.unit_of(tag))
        groups.setdefault((compiled.unit, compiled.kind), []).append(
            Item(compiled, compiled.address, compiled.width))
    return {
        key: plan_blocks(items, _limit(source, key[1]), source.max_gap)
        for key, items in sorted(groups.items())
    }


def _limit(source: ModbusSourceConfig, kind: str) -> int:
    return source.max_bits if kind in BIT_KINDS else source.max_registers


class ModbusAdapter:
    """The polling task of one Modbus source."""

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.source: ModbusSourceConfig = ctx.source  # type: ignore[assignment]
        self.machine = ctx.machine.id
        self.plan = build_plan(self.source)
        self.min_requests = sum(len(blocks) for blocks in self.plan.values())
        self.all_tags = [it.key for blocks in self.plan.values() for b in blocks for it in b.items]
        self.bad: set[str] = set()  # tags whose BAD reading was already handed over
        self.jitter: deque[float] = deque(maxlen=JITTER_SAMPLES)  # seconds late, per scan
        self.overruns = 0
        self.scans = 0
        self.splits = 0
        self.requests = 0  # requests of the last complete scan
        self._sent = 0  # ... and of the scan running now
        self.link: Link | None = None
        self._readers: dict[int, BlockReader] = {}  # by id(block), built at its first answer
        self._where = f"machine {self.machine!r} source {self.source.id!r}"

    async def run(self) -> None:
        """Poll until cancelled."""
        try:
            link = self.link = acquire_link(self.source)
        except ValueError as exc:
            self.ctx.health.error(f"{self._where}: {exc}", connected=False)
            await asyncio.Event().wait()  # a config conflict: report it and stay idle
            return
        try:
            await self._schedule(link)
        finally:
            release_link(link)

    async def _schedule(self, link: Link) -> None:
        """Fixed-rate ticks: the n-th scan is due at start + n * interval whatever the scans
        took, so there is no drift; a scan that runs past a tick skips it and counts an overrun.
        Sources started together tick together on purpose: their requests share event-loop
        wake-ups, which measured half the CPU of spreading them over the second."""
        loop = asyncio.get_running_loop()
        interval = self.source.interval
        due = loop.time()
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            self.jitter.append(started - due)
            await self.scan(link)
            self.ctx.health.scan_time = loop.time() - started
            due += interval
            late = loop.time() - due
            if late >= 0:
                skipped = int(late // interval) + 1
                self.overruns += skipped
                due += skipped * interval
            self._report(link)

    def _report(self, link: Link) -> None:
        extra = self.ctx.health.extra
        extra["requests_per_scan"] = self.requests
        extra["min_requests"] = self.min_requests
        extra["overruns"] = self.overruns
        extra["scans"] = self.scans
        extra["splits"] = self.splits
        extra["connects"] = link.connects
        extra["retry_in_s"] = round(link.backoff.retry_in, 3)
        if self.scans % 10 == 1:  # sorting the last hour of samples now and then is cheap
            extra["jitter_p50_ms"] = round(percentile(self.jitter, 0.50) * 1000, 3)
            extra["jitter_p99_ms"] = round(percentile(self.jitter, 0.99) * 1000, 3)

    async def scan(self, link: Link) -> list[Reading]:
        """Read every block once; hand the readings over and return them."""
        self.scans += 1
        self._sent = 0
        readings: list[Reading] = []
        failed = link.failed_connects
        errors = self.ctx.health.errors
        if not await link.ensure_connected():
            if link.failed_connects != failed:  # an attempt failed now (not just waiting)
                self.ctx.health.error(
                    f"{self._where}: cannot connect to {link.where}; retrying in "
                    f"{link.backoff.retry_in:.1f} s (check power, cable, address and port)",
                    connected=False)
            self._mark_bad(self.all_tags, readings, now_us())
        else:
            try:
                ok = await self._read_all(link, readings)
            except (ConnectionException, OSError) as exc:
                link.lost()
                self._all_bad(readings, f"connection to {link.where} lost: {exc}")
            else:
                if ok:  # clean: no block of this scan failed, so the source has recovered
                    self.ctx.health.ok(sum(1 for r in readings if r.quality is GOOD),
                                       clean=self.ctx.health.errors == errors)
        self.requests = self._sent
        if readings:
            await self.ctx.sink.put(readings)
        return readings

    async def _read_all(self, link: Link, readings: list[Reading]) -> bool:
        """Read the plan; True when at least one block answered."""
        answered = False
        dead: set[int] = set()
        for (unit, kind), blocks in self.plan.items():
            if unit in dead:
                continue
            i = 0
            while i < len(blocks):
                block = blocks[i]
                try:
                    self._sent += 1
                    response = await link.read(kind, unit, block.start, block.count)
                except GarbledAnswer:
                    answered = True
                    self._block_bad(block, kind, unit, GARBLED, readings, now_us())
                    i += 1
                    continue
                except ModbusIOException:
                    if not link.connected:
                        raise ConnectionException("no answers; connection closed") from None
                    dead.add(unit)
                    self._unit_bad(unit, readings,
                                   f"no answer from unit {unit} at {link.where} within "
                                   f"{self.source.timeout:g} s ({self.source.retries} retries); "
                                   f"check the unit id, power and wiring")
                    break
                ts = now_us()
                if response.isError():
                    code = response.exception_code
                    if code == 2:
                        parts = split_block(block, _limit(self.source, kind))
                        if parts is not None:
                            blocks[i : i + 1] = parts  # kept: the next scan reads the parts
                            self.splits += 1
                            continue
                    answered = True
                    self._block_bad(block, kind, unit, code, readings, ts)
                else:
                    answered = True
                    self._decode(block, kind, response, readings, ts)
                i += 1
        return answered

    def _decode(self, block: Block[CompiledTag], kind: str, response: Any,
                readings: list[Reading], ts: int) -> None:
        machine, bad = self.machine, self.bad
        data: Sequence[Any] = response.bits if kind in BIT_KINDS else response.registers
        if len(data) < block.count:
            self._block_bad(block, kind, block.items[0].key.unit, -1, readings, ts)
            return
        if kind not in BIT_KINDS and len(data) != block.count:
            # more registers than asked for: an answer to some other request, not ours
            self._block_bad(block, kind, block.items[0].key.unit, GARBLED, readings, ts)
            return
        reader = self._readers.get(id(block))
        if reader is None or reader.block is not block:  # first answer, or a split's part
            reader = self._readers[id(block)] = BlockReader(block, kind)
        values = reader.decode(data)
        if reader.plain and (not bad or bad.isdisjoint(reader.names)):
            # the usual answer: nothing to normalise, no tag of it to mark good again
            readings += good_readings(machine, reader.names, ts, values)
            return
        for name, normalise, value in zip(reader.names, reader.normalisers, values, strict=True):
            if normalise is not None and value is not None:
                value = normalise(value)
            if value is None:  # NaN or infinity from a float register, or the nan_value
                if name not in bad:
                    bad.add(name)
                    readings.append(Reading(machine, name, ts, None, BAD))
                continue
            if bad:
                bad.discard(name)
            readings.append(Reading(machine, name, ts, value, GOOD))

    def _mark_bad(self, tags: list[CompiledTag], readings: list[Reading], ts: int) -> None:
        for tag in tags:
            if tag.name not in self.bad:
                self.bad.add(tag.name)
                readings.append(Reading(self.machine, tag.name, ts, None, BAD))

    def _block_bad(self, block: Block[CompiledTag], kind: str, unit: int, code: int,
                   readings: list[Reading], ts: int) -> None:
        tags = [item.key for item in block.items]
        names = ", ".join(t.name for t in tags[:3]) + (" ..." if len(tags) > 3 else "")
        span = f"{kind} {block.start}" + (f"..{block.stop - 1}" if block.count > 1 else "")
        if code == GARBLED:
            why = "with a frame that cannot be decoded (its byte count or length is wrong)"
        elif code < 0:
            why = "a short answer"
        else:
            why = f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"
        hint = {2: "; check the tag's address and register kind against the register map",
                1: "; the device does not offer this register kind, check 'register'",
                GARBLED: "; check that no other device answers on this unit id and ask the "
                         "device's maker whether it supports reads of this size"}
        self.ctx.health.error(f"{self._where}: unit {unit} answered {why} reading {span} "
                              f"(tags {names}){hint.get(code, '')}")
        self._mark_bad(tags, readings, ts)

    def _unit_bad(self, unit: int, readings: list[Reading], message: str) -> None:
        self.ctx.health.error(f"{self._where}: {message}")
        tags = [item.key for (u, _), blocks in self.plan.items() if u == unit
                for block in blocks for item in block.items]
        self._mark_bad(tags, readings, now_us())

    def _all_bad(self, readings: list[Reading], message: str) -> None:
        self.ctx.health.error(f"{self._where}: {message}", connected=False)
        self._mark_bad(self.all_tags, readings, now_us())


def percentile(samples: Sequence[float] | deque[float], q: float) -> float:
    """The q-quantile (nearest rank) of samples; 0 when there are none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def create_adapter(ctx: AdapterContext) -> ModbusAdapter:
    return ModbusAdapter(ctx)
