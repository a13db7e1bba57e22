"""Production figures for any window, from what derivation stored: state timelines, downtimes,
parts, OEE (ISO 22400-2), the daily ledger per shift and the equipment networking rate.

Everything is answered from the stored intervals and minute sums, never by reading the raw
readings again. The open state of each machine comes from its checkpoint, carried to now the
way derivation would (`machine.project`), so a machine whose data stopped shows offline.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from collector.config import CollectorConfig, DowntimeReason
from collector.derive.machine import OFFLINE, Interval, project
from collector.derive.rules import MachineRules, compile_rules
from collector.derive.shifts import PlantCalendar
from collector.ledger.production import MINUTE, Checkpoint, ProductionStore, Sums
from collector.model import now_us

STATES = ("running", "idle", "stopped", "offline")
UMH_CODES = {"running": 10000, "offline": 30000, "stopped": 40000, "idle": 40100}
UMH_MICRO_STOP = 50000
LOOKBACK = 24 * 3600 * 1_000_000  # how far back a downtime reaching into a window is followed
CONNECTED = 0.95  # a machine counts as networked with good data this share of the time
SECOND = 1_000_000


class UnknownDowntime(LookupError):
    pass


@dataclass
class Downtime:
    machine: str
    start: int
    end: int
    states: list[str]
    reason: str | None = None
    comment: str | None = None
    ongoing: bool = False

    @property
    def id(self) -> str:
        return downtime_id(self.machine, self.start)

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SECOND


def downtime_id(machine: str, start: int) -> str:
    """Stable while the downtime lasts and after a rebuild: the machine and where it starts."""
    return f"{machine}@{start}"


def parse_downtime_id(text: str) -> tuple[str, int]:
    machine, _, start = text.rpartition("@")
    if not machine or not start.isdigit():
        raise UnknownDowntime(f"{text!r} is not a downtime id (they look like press07@1795327200000000)")
    return machine, int(start)


@dataclass
class Figures:
    """What OEE is computed from: sums first, ratios last (so lines add up)."""

    start: int
    end: int
    planned_s: float = 0.0
    running_planned_s: float = 0.0
    seconds: dict[str, float] | None = None
    total: int = 0
    good: int = 0
    reject: int = 0
    energy_kwh: float = 0.0
    ideal_s: float = 0.0  # ideal cycle x parts, summed per machine
    ideal_cycle_s: float | None = None
    downtimes: int = 0
    micro_stops: int = 0
    longest_downtime_s: float = 0.0
    has_states: bool = True  # without state rules there is no running time to judge by
    has_counters: bool = True
    downtime_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.seconds is None:
            self.seconds = dict.fromkeys(STATES, 0.0)

    def add(self, other: Figures) -> None:
        assert self.seconds is not None and other.seconds is not None
        self.planned_s += other.planned_s
        self.running_planned_s += other.running_planned_s
        for state in STATES:
            self.seconds[state] += other.seconds[state]
        self.total += other.total
        self.good += other.good
        self.reject += other.reject
        self.energy_kwh += other.energy_kwh
        self.ideal_s += other.ideal_s
        self.downtime_ids |= other.downtime_ids
        self.downtimes = len(self.downtime_ids)  # one that spans two shifts is one downtime
        self.micro_stops += other.micro_stops
        self.longest_downtime_s = max(self.longest_downtime_s, other.longest_downtime_s)
        self.has_states = self.has_states or other.has_states
        self.has_counters = self.has_counters or other.has_counters

    def ratios(self) -> dict[str, float | None]:
        """ISO 22400-2: availability = running in planned time / planned time; performance =
        ideal cycle x parts / running time; quality = good / total; a ratio over 0 is None."""
        seconds = self.seconds or {}
        running = seconds.get("running", 0.0)
        availability = _ratio(self.running_planned_s, self.planned_s) if self.has_states else None
        performance = None
        if self.has_states and self.has_counters and (self.ideal_s or self.ideal_cycle_s):
            performance = _ratio(self.ideal_s, running)
        quality = _ratio(self.good, self.total)
        oee = (availability * performance * quality
               if availability is not None and performance is not None and quality is not None
               else None)
        return {"availability": availability, "performance": performance, "quality": quality,
                "oee": oee}

    def as_dict(self) -> dict[str, Any]:
        seconds = self.seconds or {}
        return {
            "planned_s": round(self.planned_s, 3),
            **{f"{state}_s": round(seconds[state], 3) for state in STATES},
            "running_planned_s": round(self.running_planned_s, 3),
            "total": self.total, "good": self.good, "reject": self.reject,
            "ideal_cycle_s": self.ideal_cycle_s,
            **{k: (round(v, 6) if v is not None else None) for k, v in self.ratios().items()},
            "energy_kwh": round(self.energy_kwh, 6),
        }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


class ProductionReport:
    """Answers production questions for the machines of one config."""

    def __init__(self, config: CollectorConfig, store: ProductionStore, clock: Any = now_us):
        plant = config.plant
        self.config = config
        self.calendar = PlantCalendar(plant.timezone, [(s.name, s.start, s.end) for s in plant.shifts],
                                      [(b.start, b.end) for b in plant.breaks], plant.days_off)
        self.rules: dict[str, MachineRules] = {}
        for machine in config.machines:
            rules = compile_rules(machine)
            if rules is not None:
                self.rules[machine.id] = rules
        self.reasons: dict[str, DowntimeReason] = {r.code: r for r in plant.downtime_reasons}
        self.store = store
        self.clock = clock

    def machine_rules(self, machine: str) -> MachineRules | None:
        return self.rules.get(machine)

    # states ------------------------------------------------------------------------------------
    async def timeline(self, machine: str, start: int, end: int) -> list[Interval]:
        """The machine's states covering [start, min(end, now)) without a gap (time nothing
        was observed is offline), neighbours of equal state merged."""
        stop = min(end, self.clock())
        if stop <= start:
            return []
        for _ in range(3):  # a commit between the two reads would tear them apart
            commits = self.store.commits
            cp = (await self.store.checkpoints([machine])).get(machine)
            stored = await self.store.intervals(machine, start, stop)
            if self.store.commits == commits:
                break
        return self._compose(cp, stored, start, stop)

    def _compose(self, cp: Checkpoint | None, stored: Sequence[Interval], start: int,
                 stop: int) -> list[Interval]:
        """The timeline of [start, stop) from the stored intervals and the open state of
        the checkpoint carried to `stop`."""
        segments = list(stored)
        if cp is not None:
            data = cp.data
            pending = data.get("pending")
            segments += project(cp.state, cp.since or 0, tuple(pending) if pending else None,
                                data.get("last_good"), int(data.get("min_duration") or 0),
                                int(data.get("offline_after") or 5 * SECOND), stop,
                                self._lag(cp, stop))
        return fill(segments, start, stop)

    def _lag(self, cp: Any, stop: int) -> int:
        """How far behind this box's clock the machine's readings were when last taken in,
        for judging the open state only when `stop` is now."""
        if stop < self.clock():
            return 0
        return max(0, int(cp.data.get("lag") or 0))

    async def states(self, machine: str, start: int, end: int,
                     codes: str | None = None) -> list[dict[str, Any]]:
        rules = self.rules.get(machine)
        if rules is None or not rules.has_states:
            return []
        timeline = await self.timeline(machine, start, end)
        micro: list[tuple[int, int]] = []
        if codes == "umh":
            micro = [(a, b) for a, b, kind in await self._stops(machine, start, end)
                     if kind == "micro"]
        out = []
        for a, b, state in timeline:
            item: dict[str, Any] = {"state": state, "start": a, "end": b,
                                    "duration_s": (b - a) / SECOND}
            if codes == "umh":
                in_micro = state != "running" and any(s <= a < e for s, e in micro)
                item["code"] = UMH_MICRO_STOP if in_micro else UMH_CODES[state]
            out.append(item)
        return out

    # downtimes ---------------------------------------------------------------------------------
    async def _stop_timeline(self, machine: str, start: int, stop: int) -> list[Interval]:
        """The timeline around [start, stop), from where a stop under way at `start` began to
        where one under way at `stop` ends, so a downtime keeps its start, id and length.
        Time before the machine was first observed is left out: no stop begins there."""
        first = await self.store.first_interval_start(machine)
        if first is None:  # nothing closed yet: from its open state
            first = _first_observed(None, (await self.store.checkpoints([machine])).get(machine))
        if first is None:
            return []
        before = await self.store.last_running_end(machine, start)
        after = await self.store.next_running_start(machine, stop)
        lo, hi = _stop_window(first, before, after, start, stop, self.clock())
        return await self.timeline(machine, lo, hi)

    async def _stop_timelines(self, machines: Sequence[str], start: int, stop: int
                              ) -> tuple[dict[str, list[Interval]], dict[str, dict[int, Any]]]:
        """`_stop_timeline` of many machines and the downtime notes inside them, read for all
        machines together: a handful of queries instead of seven per machine."""
        now = self.clock()
        if stop <= start or not machines:
            return {}, {}
        for _ in range(3):  # a commit between the reads would tear them apart
            commits = self.store.commits
            extents, cps = await asyncio.gather(self.store.extents(machines, start, stop),
                                                self.store.checkpoints(machines))
            windows = {}
            for machine in machines:
                first_interval, before, after = extents.get(machine, (None, None, None))
                first = _first_observed(first_interval, cps.get(machine))
                if first is None:
                    continue
                lo, hi = _stop_window(first, before, after, start, stop, now)
                if hi > lo:
                    windows[machine] = (lo, hi)
            stored, notes = await asyncio.gather(self.store.intervals_of(windows),
                                                 self.store.notes_of(windows))
            if self.store.commits == commits:
                break
        timelines = {m: self._compose(cps.get(m), stored[m], lo, hi)
                     for m, (lo, hi) in windows.items()}
        return timelines, notes

    async def _stops(self, machine: str, start: int, end: int,
                     timeline: list[Interval] | None = None) -> list[tuple[int, int, str]]:
        """(start, end, kind) of every maximal period that is not running, inside planned
        time, overlapping [start, end), whole; kind: downtime, micro, or short (not over
        yet and still shorter than `micro_stop`)."""
        rules = self.rules.get(machine)
        now = self.clock()
        stop = min(end, now)
        if rules is None or not rules.has_states or stop <= start:
            return []
        if timeline is None:
            timeline = await self._stop_timeline(machine, start, stop)
        if not timeline:
            return []
        planned = self.calendar.planned(timeline[0][0], timeline[-1][1])
        out = []
        for pa, pb in _intersect(_stops(timeline), planned):  # both sorted: one merge
            if pb <= start or pa >= stop:
                continue
            if pb - pa >= rules.micro_stop:
                out.append((pa, pb, "downtime"))
            else:
                out.append((pa, pb, "short" if pb >= now else "micro"))
        return out

    async def downtimes(self, machine: str, start: int, end: int,
                        timeline: list[Interval] | None = None) -> tuple[int, list[Downtime]]:
        """(micro-stops, downtimes) overlapping [start, end): maximal periods that are not
        running, inside planned time; shorter than `micro_stop`: micro-stops (counted where
        they start). A downtime keeps its whole extent (its id is where it starts)."""
        if timeline is None:
            rules = self.rules.get(machine)
            stop = min(end, self.clock())
            if rules is None or not rules.has_states or stop <= start:
                return 0, []
            timeline = await self._stop_timeline(machine, start, stop)
        stops = await self._stops(machine, start, end, timeline)
        micro = sum(1 for a, _, kind in stops if kind == "micro" and a >= start)
        return micro, await self._downtimes_of(machine, stops, timeline)

    async def _downtimes_of(self, machine: str, stops: list[tuple[int, int, str]],
                            timeline: list[Interval],
                            notes: dict[int, Any] | None = None) -> list[Downtime]:
        """The stops that are downtimes, with their reasons and states (`notes`: the
        machine's downtime notes covering them, when read already)."""
        downs = [(a, b) for a, b, kind in stops if kind == "downtime"]
        if not downs:
            return []
        if notes is None:
            notes = await self.store.notes(machine, downs[0][0], downs[-1][0] + 1)
        now = self.clock()
        out = []
        for (a, b), states in zip(downs, _states_during(timeline, downs), strict=True):
            reason, comment = notes.get(a, (None, None))
            out.append(Downtime(machine, a, b, states, reason, comment, ongoing=b >= now))
        return out

    async def set_reason(self, downtime: str, reason: str | None, comment: str | None,
                         keep: tuple[str, ...] = ()) -> Downtime:
        """Store a downtime's reason and comment; fields named in `keep` stay as they are."""
        machine, start = parse_downtime_id(downtime)
        if machine not in self.rules:
            raise UnknownDowntime(f"no downtime {downtime!r}: machine {machine!r} has no "
                                  "production rules")
        if reason is not None and reason not in self.reasons:
            known = ", ".join(self.reasons) or "none are configured (plant.downtime_reasons)"
            raise ValueError(f"unknown reason {reason!r}; use one of: {known}")
        _, found = await self.downtimes(machine, start, start + 1)
        match = [d for d in found if d.start == start]
        if not match:
            raise UnknownDowntime(f"no downtime {downtime!r}: machine {machine!r} has no "
                                  "downtime starting then")
        if "reason" in keep:
            reason = match[0].reason
        if "comment" in keep:
            comment = match[0].comment
        await self.store.set_note(machine, start, reason, comment)
        match[0].reason, match[0].comment = reason, comment
        return match[0]

    # figures -----------------------------------------------------------------------------------
    async def figures(self, machine: str, start: int, end: int,
                      sums: Sums | None = None, around: list[Interval] | None = None,
                      day: tuple[list[tuple[int, int, str]], list[Downtime]] | None = None,
                      ) -> Figures:
        """Everything OEE and the daily ledger need for one machine and window; `around` is
        the machine's stop timeline (`_stop_timeline`) of a span holding the window, when
        the caller has it already (the shifts of one day)."""
        rules = self.rules.get(machine)
        stop = max(start, min(end, self.clock()))
        fig = Figures(start, stop)
        if rules is None:
            return fig
        fig.ideal_cycle_s = rules.ideal_cycle
        fig.has_states = rules.has_states
        fig.has_counters = any(role in rules.counter_roles for role in ("total", "good"))
        if stop <= start:
            return fig
        planned = self.calendar.planned(start, stop)
        planned_down = 0
        if rules.has_states:
            if around is None:
                around = await self._stop_timeline(machine, start, stop)
            inside = _slice(around, start, stop)  # never observed: offline
            assert fig.seconds is not None
            spent = dict.fromkeys(fig.seconds, 0)
            running = []
            for a, b, state in inside:
                spent[state] += b - a
                if state == "running":
                    running.append((a, b))
            for state, us in spent.items():
                fig.seconds[state] += us / SECOND
            fig.running_planned_s = _length(_intersect(running, planned)) / SECOND
            if day is None:
                micro, downs = await self.downtimes(machine, start, stop, around)
            else:  # the day's stops and downtimes, worked out once for all its shifts
                stops = day[0]  # sorted by start
                first, last = bisect_left(stops, (start,)), bisect_left(stops, (stop,))
                micro = sum(1 for i in range(first, last) if stops[i][2] == "micro")
                downs = [d for d in day[1] if d.end > start and d.start < stop]
            for d in downs:
                reason = self.reasons.get(d.reason or "")
                if reason is not None and reason.planned:
                    planned_down += min(d.end, stop) - max(d.start, start)
            fig.downtimes = len(downs)
            fig.downtime_ids = {d.id for d in downs}
            fig.micro_stops = micro
            fig.longest_downtime_s = max(((min(d.end, stop) - max(d.start, start)) / SECOND
                                          for d in downs), default=0.0)
        fig.planned_s = (_length(planned) - planned_down) / SECOND
        if sums is None:
            sums = await self.store.sums(machine, start, stop)
        fig.total, fig.good, fig.reject = self.roles(rules, sums)
        fig.energy_kwh = sums.energy_kwh
        if rules.ideal_cycle is not None:
            fig.ideal_s = rules.ideal_cycle * fig.total
        return fig

    @staticmethod
    def roles(rules: MachineRules, sums: Sums) -> tuple[int, int, int]:
        """(total, good, reject) from the configured counters: the third follows from two;
        a total alone counts every part as good."""
        roles = rules.counter_roles
        total, good, reject = sums.total, sums.good, sums.reject
        if "total" in roles and "good" in roles:
            reject = total - good
        elif "total" in roles and "reject" in roles:
            good = total - reject
        elif "good" in roles and "reject" in roles:
            total = good + reject
        elif "total" in roles:
            good, reject = total, 0
        elif "good" in roles:
            total, reject = good, 0
        return total, good, reject

    async def oee(self, machine: str, start: int, end: int) -> dict[str, Any]:
        fig = await self.figures(machine, start, end)
        return {"start": fig.start, "end": fig.end, **fig.as_dict()}

    async def line_oee(self, line: str, start: int, end: int) -> dict[str, Any]:
        machines = [m for m, r in self.rules.items() if r.line == line]
        total = Figures(start, max(start, min(end, self.clock())))
        for machine in machines:
            total.add(await self.figures(machine, start, end))
        total.ideal_cycle_s = None
        out = {"line": line, "machines": machines, "start": total.start, "end": total.end,
               **total.as_dict()}
        return out

    async def production(self, machine: str, start: int, end: int,
                         bucket: str | int | None) -> dict[str, Any]:
        rules = self.rules.get(machine)
        stop = max(start, min(end, self.clock()))
        spans: list[tuple[int, int]] = []
        names: list[dict[str, str]] = []
        if bucket == "shift":
            for s in self.calendar.shifts_between(start, stop):
                spans.append((max(s.start, start), min(s.end, stop)))
                names.append({"shift": s.name, "date": s.date.isoformat()})
        elif bucket == "day":
            day = self.calendar.local_date(start)
            while True:
                a, b = self.calendar.day_bounds(day)
                if a >= stop:
                    break
                spans.append((max(a, start), min(b, stop)))
                names.append({"date": day.isoformat()})
                day += timedelta(days=1)
        elif isinstance(bucket, int):
            a = start // bucket * bucket
            while a < stop:
                spans.append((max(a, start), min(a + bucket, stop)))
                a += bucket
        keep = [i for i, (a, b) in enumerate(spans) if b > a]
        spans = [spans[i] for i in keep]
        names = [names[i] for i in keep] if names else []
        sums = await self.store.sums(machine, start, stop) if rules else Sums()
        total, good, reject = self.roles(rules, sums) if rules else (0, 0, 0)
        out: dict[str, Any] = {"start": start, "end": stop, "total": total, "good": good,
                               "reject": reject}
        if bucket is not None:
            items = []
            sums_list = await self._span_sums(machine, spans)
            for i, ((a, b), part) in enumerate(zip(spans, sums_list, strict=True)):
                t, g, r = self.roles(rules, part) if rules else (0, 0, 0)
                items.append({"start": a, "end": b, **(names[i] if names else {}),
                              "total": t, "good": g, "reject": r})
            out["items"] = items
        return out

    async def _span_sums(self, machine: str, spans: Sequence[tuple[int, int]]) -> list[Sums]:
        """Sums of many spans: one query over the minute sums when the spans are whole
        minutes, else the counts themselves."""
        if not spans or machine not in self.rules:
            return [Sums() for _ in spans]
        if all(a % MINUTE == 0 and b % MINUTE == 0 for a, b in spans):
            edges = sorted({x for span in spans for x in span})
            found = await self.store.sums_by_edges([machine], edges)
            index = {edge: i for i, edge in enumerate(edges)}
            out = []
            for a, b in spans:
                acc = Sums()
                for i in range(index[a], index[b]):
                    acc.add(found.get((machine, i), Sums()))
                out.append(acc)
            return out
        events = await self.store.count_times(machine, spans[0][0], spans[-1][1])
        out = [Sums() for _ in spans]
        j = 0
        for ts, t, g, r in events:
            while j < len(spans) and spans[j][1] <= ts:
                j += 1
            if j == len(spans):
                break
            if spans[j][0] <= ts:
                out[j].add(Sums(t, g, r))
        return out

    # the daily ledger --------------------------------------------------------------------------
    async def daily(self, day: date) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """One row per machine with production rules and shift of local date `day`, and one
        row per machine for the whole day (sums first, then ratios)."""
        spans = self.calendar.shifts_on(day)
        now = self.clock()
        cut = now - now % MINUTE  # a shift going on now: whole minutes up to here, then the rest
        rows, totals = [], []
        edges = sorted({x for s in spans for x in (s.start, min(s.end, cut))
                        if x <= now and x % MINUTE == 0})
        machines = list(self.rules)
        index = {edge: i for i, edge in enumerate(edges)}
        day_start = min((sp.start for sp in spans), default=0)
        day_stop = min(max((sp.end for sp in spans), default=0), now)
        open_now = any(sp.start <= cut < now < sp.end for sp in spans)
        # the parts and the timelines read at once (PostgreSQL: on connections of their own)
        by_edges, partial, (timelines, notes) = await asyncio.gather(
            self.store.sums_by_edges(machines, edges),
            self.store.partial_minute(machines if open_now else [], cut, now),
            self._stop_timelines([m for m in machines if self.rules[m].has_states],
                                 day_start, day_stop))
        for machine in machines:
            whole: Figures | None = None
            around = None
            day_stops = None
            rules = self.rules[machine]
            if rules.has_states and day_stop > day_start:
                around = timelines.get(machine, [])
                stops = await self._stops(machine, day_start, day_stop, around)
                day_stops = (stops, await self._downtimes_of(machine, stops, around,
                                                             notes.get(machine, {})))
            for span in spans:
                end = min(span.end, now)
                whole_to = min(span.end, cut)  # `end`, or the minute now is in
                sums = None
                if end > span.start and span.start in index and whole_to in index:
                    sums = Sums()
                    for i in range(index[span.start], index[whole_to]):
                        sums.add(by_edges.get((machine, i), Sums()))
                    if whole_to < end:
                        sums.add(partial.get(machine, Sums()))
                fig = await self.figures(machine, span.start, span.end, sums, around, day_stops)
                rows.append(self._row(day, machine, span.name, span.start, span.end, fig))
                if whole is None:
                    whole = Figures(span.start, span.end, ideal_cycle_s=fig.ideal_cycle_s,
                                    has_states=False, has_counters=False)
                whole.add(fig)
                whole.end = max(whole.end, span.end)
            if whole is not None:
                totals.append(self._row(day, machine, "total", whole.start, whole.end, whole))
        return rows, totals

    def _row(self, day: date, machine: str, shift: str, start: int, end: int,
             fig: Figures) -> dict[str, Any]:
        figures = fig.as_dict()
        return {
            "date": day.isoformat(), "machine": machine, "shift": shift,
            "start": start, "end": end,
            "planned_s": figures["planned_s"], "running_s": figures["running_s"],
            "idle_s": figures["idle_s"], "stopped_s": figures["stopped_s"],
            "offline_s": figures["offline_s"], "downtimes": fig.downtimes,
            "micro_stops": fig.micro_stops,
            "longest_downtime_s": round(fig.longest_downtime_s, 3),
            "total": fig.total, "good": fig.good, "reject": fig.reject,
            "availability": figures["availability"], "performance": figures["performance"],
            "quality": figures["quality"], "oee": figures["oee"],
            "energy_kwh": figures["energy_kwh"],
        }

    # networking rate ---------------------------------------------------------------------------
    async def connectivity(self, start: int, end: int, minutes_with_data: Any) -> dict[str, Any]:
        """Per machine the share of [start, end) with good data; the plant's rate is the share
        of configured machines with at least 95 %. `minutes_with_data(machine, a, b)` counts
        the minutes with readings of a machine without state rules."""
        stop = max(start, min(end, self.clock()))
        span = stop - start
        items = []
        for machine in self.config.machines:
            if span <= 0:
                share = None
            elif machine.id in self.rules and self.rules[machine.id].has_states:
                timeline = await self.timeline(machine.id, start, stop)
                offline = sum(b - a for a, b, s in timeline if s == OFFLINE)
                share = 1 - offline / span
            else:
                minutes = await minutes_with_data(machine.id, start, stop)
                share = min(1.0, minutes * MINUTE / span)
            items.append({"machine": machine.id,
                          "share": round(share, 6) if share is not None else None,
                          "connected": share is not None and share >= CONNECTED})
        counted = [i for i in items if i["share"] is not None]
        rate = (sum(1 for i in counted if i["connected"]) / len(items)) if items and counted else None
        return {"start": start, "end": stop, "threshold": CONNECTED, "rate": rate,
                "machines": items}


def _first_observed(first_interval: int | None, cp: Checkpoint | None) -> int | None:
    """When derivation first saw a machine: its first stored interval, else its open state
    (from its checkpoint), or None."""
    if first_interval is not None:
        return first_interval
    if cp is None:
        return None
    pending = cp.data.get("pending")
    if cp.state is not None and cp.since is not None:
        return cp.since
    return int(pending[1]) if pending else None


def _stop_window(first: int, before: int | None, after: int | None, start: int, stop: int,
                 now: int) -> tuple[int, int]:
    """The span a stop timeline around [start, stop) covers: from the end of the last running
    interval that began before `start` (else from when the machine was first observed) to
    the start of the first running interval at or after `stop` (else now)."""
    lo = max(first, min(start, before if before is not None else first))
    hi = min(now, max(stop, after if after is not None else now))
    return lo, hi


# interval arithmetic --------------------------------------------------------------------------
def _slice(timeline: Sequence[Interval], start: int, stop: int) -> list[Interval]:
    """`fill(timeline, start, stop)` of a timeline that is a `fill` result itself (sorted,
    without gaps, equal neighbours merged), touching only the part of it inside
    [start, stop)."""
    if stop <= start:
        return []
    i = bisect_right(timeline, start, key=_end)
    j = bisect_left(timeline, stop, key=_start)
    part = list(timeline[i:j])
    if not part:
        return [(start, stop, OFFLINE)]
    first_start, first_end, first_state = part[0]
    if first_start < start:
        part[0] = (start, first_end, first_state)
    last_start, last_end, last_state = part[-1]
    if last_end > stop:
        part[-1] = (part[-1][0], stop, last_state)
    if part[0][0] > start:  # before the timeline: nothing was observed
        if part[0][2] == OFFLINE:
            part[0] = (start, part[0][1], OFFLINE)
        else:
            part.insert(0, (start, part[0][0], OFFLINE))
    if part[-1][1] < stop:
        _append(part, part[-1][1], stop, OFFLINE)
    return part


def fill(segments: Sequence[Interval], start: int, stop: int) -> list[Interval]:
    """`segments` clipped to [start, stop), gaps filled with offline, equal neighbours merged.
    (Runs over every interval of a day for every machine of the daily ledger: kept free of
    calls per interval.)"""
    out: list[Interval] = []
    append = out.append
    cursor = start
    last = None  # the state of out[-1], which always ends at `cursor`
    for a, b, state in sorted(segments):
        if a < cursor:
            a = cursor
        if b > stop:
            b = stop
        if b <= a:
            continue
        if a > cursor:
            if last == OFFLINE:
                out[-1] = (out[-1][0], a, OFFLINE)
            else:
                append((cursor, a, OFFLINE))
                last = OFFLINE
        if last == state:
            out[-1] = (out[-1][0], b, state)
        else:
            append((a, b, state))
            last = state
        cursor = b
        if cursor >= stop:
            break
    if cursor < stop:
        _append(out, cursor, stop, OFFLINE)
    return out


def _append(out: list[Interval], a: int, b: int, state: str) -> None:
    if out and out[-1][2] == state and out[-1][1] == a:
        out[-1] = (out[-1][0], b, state)
    else:
        out.append((a, b, state))


def _stops(timeline: Sequence[Interval]) -> list[tuple[int, int]]:
    """Maximal periods that are not running."""
    out: list[tuple[int, int]] = []
    for a, b, state in timeline:
        if state == "running":
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _intersect(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The intersection of two sorted lists of disjoint intervals."""
    if len(b) <= 4:  # a few (a shift's planned time): `a` cut at their edges, by bisection
        cut: list[tuple[int, int]] = []
        for lo, hi in b:
            i = bisect_right(a, lo, key=_end)
            j = bisect_left(a, hi, key=_start)
            if i >= j:
                continue
            part = list(a[i:j])
            if part[0][0] < lo:
                part[0] = (lo, part[0][1])
            if part[-1][1] > hi:
                part[-1] = (part[-1][0], hi)
            cut += part
        return cut
    out: list[tuple[int, int]] = []
    append = out.append
    i = j = 0
    na, nb = len(a), len(b)
    while i < na and j < nb:
        a0, a1 = a[i]
        b0, b1 = b[j]
        lo = a0 if a0 > b0 else b0
        hi = a1 if a1 < b1 else b1
        if lo < hi:
            append((lo, hi))
        if a1 < b1:
            i += 1
        else:
            j += 1
    return out


def _length(intervals: Sequence[tuple[int, int]]) -> int:
    return sum(b - a for a, b in intervals)


def _states_during(timeline: Sequence[Interval], spans: Sequence[tuple[int, int]]
                   ) -> list[list[str]]:
    """For each of `spans` (sorted, disjoint) the states of `timeline` (sorted, without gaps)
    within it, in order: one walk along both."""
    out: list[list[str]] = []
    i, n = 0, len(timeline)
    for a, b in spans:
        while i < n and timeline[i][1] <= a:
            i += 1
        states: list[str] = []
        k = i
        while k < n and timeline[k][0] < b:
            state = timeline[k][2]
            if state not in states:
                states.append(state)
            k += 1
        out.append(states)
    return out


def _start(interval: Sequence[int | str]) -> Any:
    return interval[0]


def _end(interval: Sequence[int | str]) -> Any:
    return interval[1]
