"""Live derivation: machine states and part counts from the readings the ledger committed.

The pipeline hands every committed batch to `Derivation.committed`; a task takes each
machine's readings in time order once they are `hold` seconds old (sources of one machine
commit a little apart) and commits what they produced with the machines' checkpoints, once a
second. At start it continues from the checkpoints, reading from the ledger whatever was
committed after them, so a restart (even SIGKILL) neither loses nor counts twice. A reading
that arrives after its machine has moved past its time (a spool replay, a device clock
behind) makes that machine derive again from the ledger from the minute it belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from collector.derive.machine import OFFLINE, MachineDerivation, Output
from collector.derive.rules import MachineRules
from collector.ledger.exact import exact_value
from collector.ledger.production import FOREVER, MINUTE, ProductionBatch, ProductionStore
from collector.model import Reading, Value, now_us

log = logging.getLogger("collector.derive")

HOLD = 2.0  # seconds a reading waits so that other sources of its machine can catch up
TICK = 1.0  # seconds between commits
FUTURE_US = 60_000_000  # a reading this far ahead of the box's clock is not taken in
LATE_US = 24 * 3600 * 1_000_000  # older than this behind its machine: left to `rebuild`
REDERIVE_EVERY = 5.0  # seconds: a machine derives again at most this often
CHUNK = 20_000  # readings read from the ledger at a time (about)
WINDOW_US = 3600 * 1_000_000  # the first time window read; then sized to CHUNK readings
DAY_US = 24 * 3600 * 1_000_000
SEEN_US = 10 * 60 * 1_000_000  # readings this close to the end may also sit in a live buffer

Item = tuple[int, str, Value, int]  # ts, tag, value, quality


def stored_form(value: Value) -> Value:
    """A value as the ledger gives it back (integers exact, other numbers as floats, NaN as
    None), so live derivation and a rebuild from stored readings see the same thing."""
    if value is None or isinstance(value, bool | str | int):
        return value
    number = float(value)
    return None if number != number else number


def from_row(kind: str | None, value: float | None, text_value: str | None,
             value_int: int | bytes | None = None) -> Value:
    """A stored reading's value: its text, its bool, its exact integer, else its double."""
    if text_value is not None:
        return text_value
    if value is None:
        return None
    if kind == "bool":
        return value != 0.0
    if value_int is not None:
        return exact_value(value, value_int)
    return float(value)


class Derivation:
    """Derives and commits the production ledger of the configured machines."""

    def __init__(self, rules: Sequence[MachineRules], ledger: Any, *, hold: float = HOLD,
                 tick: float = TICK, clock: Callable[[], int] = now_us):
        self.rules = {r.machine: r for r in rules}
        self.ledger = ledger
        self.store: ProductionStore = ledger.production
        self.hold_us = int(hold * 1e6)
        self.tick = tick
        self.clock = clock
        self.machines: dict[str, MachineDerivation] = {}
        self.wanted: dict[str, frozenset[str]] = {r.machine: r.tags for r in rules}
        self.buffers: dict[str, list[Item]] = defaultdict(list)
        self.late: dict[str, int] = {}  # machine -> earliest late reading
        self._last_rederive: dict[str, float] = {}
        self.ready = False
        self._pending = ProductionBatch()
        self._touched: dict[str, MachineDerivation] = {}  # checkpoints due at the next commit
        self._task: asyncio.Task[None] | None = None
        self.stats: Counter[str] = Counter()
        self.last_error: str | None = None
        self._logged: dict[str, float] = {}

    # feed --------------------------------------------------------------------------------------
    def committed(self, batch: Sequence[Reading]) -> None:
        """Take note of readings the ledger has just committed (called by the pipeline)."""
        wanted = self.wanted
        buffers = self.buffers
        for r in batch:
            tags = wanted.get(r.machine)
            if tags is not None and r.tag in tags:
                buffers[r.machine].append((r.ts, r.tag, stored_form(r.value), int(r.quality)))

    # task --------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.rules:
            self._task = asyncio.create_task(self._run(), name="derivation")

    async def stop(self) -> None:
        """Take in what is buffered and commit it (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.ready:
            try:
                await self.cycle(final=True)
            except Exception as exc:  # the next start derives it again from the ledger
                log.warning("production derivation: the last readings were not committed at "
                            "shutdown (%s: %s); the next start takes them in from the ledger",
                            type(exc).__name__, str(exc).splitlines()[0][:200])

    async def _run(self) -> None:
        while True:
            try:
                if not self.ready:
                    if self.ledger.ready:
                        await self.resume()
                else:
                    await self.cycle()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats["errors"] += 1
                message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                if message != self.last_error:
                    log.warning("production derivation: %s (retrying)", message)
                self.last_error = message
            await asyncio.sleep(self.tick)

    # start-up ----------------------------------------------------------------------------------
    async def resume(self) -> None:
        """Continue every machine from its checkpoint, taking in what the ledger committed
        after it; a machine without one starts now."""
        stored = await self.store.checkpoints(list(self.rules))
        horizon = self.clock() - self.hold_us
        for machine, rules in self.rules.items():
            cp = stored.get(machine)
            if cp is None:
                md = MachineDerivation(rules)
                md.upto = md.begin = horizon  # history is left to `collector rebuild`
                self.machines[machine] = md
                # stored at once: a restart before the first commit continues from here
                self._checkpoint(md)
                continue
            md = MachineDerivation(rules, cp.data)
            self.machines[machine] = md
            out = Output()
            seen = await self._replay(md, md.upto, horizon, out)
            self._collect(md, out)
            self._drop_seen(machine, seen, md.upto)
        await self._commit()
        self.ready = True
        log.info("production derivation running for %d machines", len(self.rules))

    # every tick --------------------------------------------------------------------------------
    async def cycle(self, final: bool = False) -> None:
        now = self.clock()
        horizon = now if final else now - self.hold_us
        for machine, buffer in list(self.buffers.items()):
            if not buffer:
                continue
            md = self.machines.get(machine)
            if md is None:
                continue
            buffer.sort(key=_ts)
            cut = len(buffer)
            while cut and buffer[cut - 1][0] > horizon:
                cut -= 1
            if not cut:
                continue
            ready, self.buffers[machine] = buffer[:cut], buffer[cut:]
            out = Output()
            self._take(md, ready, now, out)
            self._collect(md, out)
        for machine in list(self.late):
            await self._maybe_rederive(machine, horizon)
        await self._commit()

    def _take(self, md: MachineDerivation, items: list[Item], now: int, out: Output) -> None:
        group: list[tuple[str, Value, int]] = []
        group_ts = None
        for ts, tag, value, quality in items:
            if ts <= md.upto:
                self._late(md, ts)
                continue
            if ts > now + FUTURE_US:
                self._count("clock_future", f"{md.machine}: a reading of {tag!r} is "
                            f"{(ts - now) / 1e6:.0f} s ahead of this box's clock; not used "
                            "for states and counts (check the device's clock)")
                continue
            if ts != group_ts:
                if group:
                    md.step(group_ts, group, out)  # type: ignore[arg-type]
                group, group_ts = [], ts
            group.append((tag, value, quality))
        if group:
            md.step(group_ts, group, out)  # type: ignore[arg-type]
            md.lag = now - md.upto
        self.stats["readings"] += len(items)

    def _late(self, md: MachineDerivation, ts: int) -> None:
        if md.upto - ts > LATE_US:
            self._count("clock_past", f"{md.machine}: a reading arrived "
                        f"{(md.upto - ts) / 3.6e9:.1f} h after its time; not used for states "
                        "and counts (collector rebuild takes it in)")
            return
        if md.begin is not None and ts <= md.begin:
            return  # before derivation began for this machine: left to `collector rebuild`
        self.stats["late_readings"] += 1
        self.late[md.machine] = min(ts, self.late.get(md.machine, ts))

    def _collect(self, md: MachineDerivation, out: Output) -> None:
        pending = self._pending
        pending.intervals += out.intervals
        pending.counts += out.counts
        pending.energy += out.energy
        self.stats.update(out.events)
        self.stats["intervals"] += len(out.intervals)
        self.stats["count_events"] += len(out.counts)
        for key, note in out.notes:
            self._log_limited(key, note)
        self._checkpoint(md)

    def _checkpoint(self, md: MachineDerivation) -> None:
        self._touched[md.machine] = md

    @staticmethod
    def _checkpoint_row(md: MachineDerivation) -> tuple[str, int, str | None, int | None,
                                                         dict[str, Any]]:
        return (md.machine, md.upto, md.state, md.since if md.state is not None else None,
                md.checkpoint())

    async def _commit(self) -> None:
        batch = self._pending
        # each machine's checkpoint as it stands now, with everything it produced so far
        batch.checkpoints = [self._checkpoint_row(md) for md in self._touched.values()]
        if not batch:
            return
        started = time.perf_counter()
        await self.store.commit(batch)  # on failure the batch waits for the next tick
        self._pending = ProductionBatch()
        self._touched.clear()
        self.stats["commits"] += 1
        self.stats["commit_us"] += int((time.perf_counter() - started) * 1e6)

    # deriving again ----------------------------------------------------------------------------
    async def _maybe_rederive(self, machine: str, horizon: int) -> None:
        last = self._last_rederive.get(machine, 0.0)
        if time.monotonic() - last < REDERIVE_EVERY:
            return
        self._last_rederive[machine] = time.monotonic()
        await self._commit()  # what is pending goes first: the rewind starts from it
        at = self.late.pop(machine)
        old = self.machines[machine]
        self._log_limited(f"{machine}/late", f"{machine}: readings arrived "
                          f"{(old.upto - at) / 1e6:.1f} s after their time (a spool replay, or "
                          "a device clock behind); states and counts derived again from the "
                          "ledger from that minute")
        try:
            md, seen = await self.rederive(machine, at, horizon)
        except BaseException:
            self.late[machine] = min(at, self.late.get(machine, at))  # tried again next tick
            raise
        md.begin = old.begin
        self.machines[machine] = md
        self._drop_seen(machine, seen, md.upto)
        self.stats["rederived"] += 1

    async def rederive(self, machine: str, at: int, until: int, *, splice: bool = False
                       ) -> tuple[MachineDerivation, set[tuple[str, int]]]:
        """Derive `machine` again from the minute of `at` up to `until`, from the ledger, and
        commit it in place of what was there, in one transaction. Live (`splice` false), what
        is derived replaces everything from `at` on, checkpoint included; a splice (a rebuild
        of a past range) keeps what lies after `until` (minute-aligned) as it is."""
        rules = self.rules[machine]
        at = at // MINUTE * MINUTE
        if splice:
            until = until // MINUTE * MINUTE
        md = await self.state_at(rules, at)
        rewind_states = md.since if md.state is not None else at
        out = Output()
        # a splice keeps the readings at `until` and after as they were counted
        seen = await self._replay(md, md.upto, until - 1 if splice else until, out)
        batch = ProductionBatch()
        self.stats.update(out.events)
        batch.intervals += out.intervals
        batch.counts += out.counts
        batch.energy += out.energy
        if splice:
            closed = len(out.intervals)
            md.advance(until, out)  # a silence before `until` ends as live derivation ended it
            batch.intervals += out.intervals[closed:]
            if md.state is not None and until > md.since:
                batch.intervals.append((machine, md.since, until, md.state))
            batch.rewind[machine] = (rewind_states, at, until)
        else:
            batch.rewind[machine] = (rewind_states, at, FOREVER)
            batch.checkpoints.append(self._checkpoint_row(md))
        await self.store.commit(batch)
        return md, seen

    async def state_at(self, rules: MachineRules, at: int) -> MachineDerivation:
        """A derivation of `rules.machine` as it stood just before `at`, rebuilt from the
        stored intervals and the newest readings before `at`."""
        machine = rules.machine
        md = MachineDerivation(rules)
        md.upto = at - 1
        md.begin = None
        found = await self.store.intervals(machine, at, at + 1)
        containing = [iv for iv in found if iv[0] <= at < iv[1]]
        if containing:
            md.state, md.since = containing[0][2], containing[0][0]
        else:
            cps = await self.store.checkpoints([machine])
            cp = cps.get(machine)
            if cp is not None and cp.state is not None and cp.since is not None \
                    and cp.since <= at:
                md.state, md.since = cp.state, cp.since
        series = await self._series(machine)
        before = await self._latest_before(series, at)
        cleared = await self._last_offline_end(machine, at)
        for tag, (ts, value, quality, good_ts, good_value) in before.items():
            if tag in rules.rule_tags:
                if quality == 0 and ts >= cleared and md.state != OFFLINE:
                    md.values[tag] = value
                if good_ts is not None and (md.last_good is None or good_ts > md.last_good):
                    md.last_good = good_ts
            for role in rules.tag_roles.get(tag, ()):
                if good_value is not None or good_ts is not None:
                    tracker = md.trackers[role]
                    tracker.update(good_value)
        return md

    async def _last_offline_end(self, machine: str, at: int) -> int:
        rows = await self.store.fetch(
            "SELECT max(end_ts) FROM state_intervals WHERE machine_id = :m AND state = :s "
            "AND end_ts <= :at", {"m": machine, "s": OFFLINE, "at": at}, 1)
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    # reading the ledger ------------------------------------------------------------------------
    async def _series(self, machine: str) -> dict[int, tuple[str, str | None]]:
        rules = self.rules[machine]
        found = await self.ledger.catalogue.series(machine)
        return {s.id: (s.tag, s.kind) for s in found if s.tag in rules.tags}

    async def _latest_before(self, series: dict[int, tuple[str, str | None]], at: int
                             ) -> dict[str, tuple[int, Value, int, int | None, Value]]:
        """tag -> (ts, value, quality) of its newest reading before `at`, and the time and
        value of its newest good one."""
        out = {}
        for sid, (tag, kind) in series.items():
            rows = await self.store.fetch(
                "SELECT ts, value, text, quality, value_int FROM readings_all WHERE series_id = :s "
                "AND ts < :at ORDER BY ts DESC LIMIT 1", {"s": sid, "at": at}, 1)
            if not rows:
                continue
            ts, value, text_value, quality, value_int = rows[0]
            good = await self.store.fetch(
                "SELECT ts, value, text, value_int FROM readings_all WHERE series_id = :s "
                "AND ts < :at AND quality = 0 ORDER BY ts DESC LIMIT 1", {"s": sid, "at": at}, 1)
            good_ts = int(good[0][0]) if good else None
            good_value = from_row(kind, good[0][1], good[0][2], good[0][3]) if good else None
            out[tag] = (int(ts), from_row(kind, value, text_value, value_int), int(quality),
                        good_ts, good_value)
        return out

    async def _replay(self, md: MachineDerivation, after: int, until: int,
                      out: Output) -> set[tuple[str, int]]:
        """Step `md` through the stored readings of its tags in (after, until], a time
        window at a time (sized to about `CHUNK` readings, so no query sorts more); returns
        the (tag, ts) of the readings of the last minutes taken in (what a live buffer may
        hold again)."""
        series = await self._series(md.machine)
        seen: set[tuple[str, int]] = set()
        if not series or until <= after:
            return seen
        ids = ", ".join(str(int(sid)) for sid in series)
        recent = until - SEEN_US
        sql = (f"SELECT series_id, ts, value, text, quality, value_int FROM readings_all WHERE "
               f"series_id IN ({ids}) AND ts > :a AND ts <= :b ORDER BY ts, series_id")

        def read(a: int, b: int) -> asyncio.Future[list[Any]]:
            return asyncio.ensure_future(self.store.fetch(sql, {"a": a, "b": b}, CHUNK))

        cursor, window = after, WINDOW_US
        upper = min(until, cursor + window)
        reading = read(cursor, upper)
        try:
            while cursor < until:
                rows = await reading
                cursor = upper
                if cursor < until:  # the database finds the next window while this one is stepped
                    # about CHUNK readings at this window's rate
                    window = max(1_000_000, min(DAY_US, window * CHUNK // max(len(rows), CHUNK // 8)))
                    upper = min(until, cursor + window)
                    reading = read(cursor, upper)
                items: list[Item] = []
                append = items.append
                for sid, ts, value, text_value, quality, value_int in rows:
                    tag, kind = series[sid]
                    if text_value is None and value_int is None and kind != "bool":
                        append((ts, tag, value, quality))  # a double, or None: as from_row
                    else:
                        append((ts, tag, from_row(kind, value, text_value, value_int), quality))
                    if ts > recent:
                        seen.add((tag, ts))
                if items:
                    self._take(md, items, self.clock(), out)
                await asyncio.sleep(0)
        finally:
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(BaseException):
                    await reading
        md.upto = max(md.upto, until)
        return seen

    def _drop_seen(self, machine: str, seen: set[tuple[str, int]], upto: int) -> None:
        """Buffered readings the ledger read already took in are not taken twice."""
        buffer = self.buffers.get(machine)
        if buffer:
            self.buffers[machine] = [i for i in buffer if i[0] > upto or (i[1], i[0]) not in seen]

    # the present -------------------------------------------------------------------------------
    def state_now(self, machine: str) -> str | None:
        md = self.machines.get(machine)
        if md is None or md.state is None:
            return None
        tail = md.tail(self.clock(), md.lag)
        return tail[-1][2] if tail else md.state

    # log and health ----------------------------------------------------------------------------
    def _count(self, event: str, message: str) -> None:
        self.stats[event] += 1
        self._log_limited(event + message.split(":", 1)[0], message)

    def _log_limited(self, key: str, message: str) -> None:
        """At most one line a minute per kind of event and machine."""
        now = time.monotonic()
        if now - self._logged.get(key, -1e9) >= 60.0:
            self._logged[key] = now
            log.warning("%s", message)

    def health(self) -> dict[str, object]:
        return {
            "machines": len(self.rules), "ready": self.ready,
            "buffered": sum(len(b) for b in self.buffers.values()),
            "last_error": self.last_error,
            **{k: v for k, v in sorted(self.stats.items()) if k != "commit_us"},
        }


def _ts(item: Item) -> int:
    return item[0]
