"""One machine's state and part counts, derived reading by reading in time order.

`MachineDerivation.step` takes every reading of one instant; closed state intervals, count
events and energy increases go to an `Output`. Its whole memory fits a small checkpoint,
stored with what it produced, so a restart continues exactly where the last commit ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.derive.counters import Event, Tracker
from collector.derive.rules import ROLES, MachineRules
from collector.model import Value

OFFLINE = "offline"
CHECKPOINT_VERSION = 1

Interval = tuple[int, int, str]  # start µs, end µs, state
Pending = tuple[str, int, int]  # state, from, held since
CountEvent = tuple[int, int, int, int]  # ts, total, good, reject (configured roles; else 0)


@dataclass
class Output:
    """What derivation produced since the last commit."""

    intervals: list[tuple[str, int, int, str]] = field(default_factory=list)
    counts: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    energy: list[tuple[str, int, float]] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    # (kind, message) of counter resets and the like, for the log
    notes: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.intervals or self.counts or self.energy)


class MachineDerivation:
    """State rules with debounce and `offline_after`, and the machine's counters."""

    def __init__(self, rules: MachineRules, checkpoint: dict[str, Any] | None = None):
        self.rules = rules
        self.machine = rules.machine
        self.state: str | None = None
        self.since = 0
        # (state, from, held since): a state not yet held for min_duration; `from` is where
        # it will start (earlier than `held since` only when coming back from offline)
        self.pending: Pending | None = None
        self.values: dict[str, Value] = {}  # newest good value of each rule tag
        self.last_good: int | None = None  # newest good reading of any rule tag
        self.upto = 0  # every reading at or before this instant has been taken in
        self.begin: int | None = None  # readings up to this were before derivation began
        self.lag = 0  # how far behind this box's clock `upto` was when last taken in
        self.trackers: dict[str, Tracker] = {role: spec.tracker() for role, spec
                                             in rules.counter_roles.items()}
        if checkpoint:
            self._restore(checkpoint)

    # reading by reading ----------------------------------------------------------------------
    def step(self, ts: int, items: list[tuple[str, Value, int]], out: Output) -> None:
        """Take in every reading (tag, value, quality) of instant `ts` (later than `upto`)."""
        rules = self.rules
        if rules.rules:
            self.advance(ts, out)
        counts = None
        for tag, value, quality in items:
            good = quality == 0
            if tag in rules.rule_tags:
                if good:
                    self.values[tag] = value
                    self.last_good = ts
                else:
                    self.values.pop(tag, None)
            roles = rules.tag_roles.get(tag)
            if roles is not None and good:
                for role in roles:
                    delta, event = self.trackers[role].update(value)
                    if event is not None:
                        self._event(out, role, tag, event, value)
                    if delta > 0:
                        if role == "energy":
                            out.energy.append((self.machine, ts, float(delta)))
                        else:
                            if counts is None:
                                counts = [0, 0, 0]
                            counts[ROLES.index(role)] += round(delta)
        if counts is not None:
            out.counts.append((self.machine, ts, counts[0], counts[1], counts[2]))
        if rules.rules:
            self._apply(self._evaluate(), ts, out)
        self.upto = ts

    def advance(self, ts: int, out: Output) -> None:
        """What time alone decided before `ts`: a pending state that lasted long enough, and
        offline once no rule tag had a good reading for `offline_after`."""
        rules = self.rules
        gone = None
        if self.last_good is not None and ts - self.last_good > rules.offline_after:
            gone = self.last_good + rules.offline_after
        until = ts if gone is None else gone
        pending = self.pending
        if pending is not None and pending[2] < until and until - pending[2] >= rules.min_duration:
            self._commit(pending[0], pending[1], out)
        if gone is not None:
            if self.state not in (None, OFFLINE):
                self._commit(OFFLINE, gone, out)
            self.pending = None
            self.values.clear()  # what was known is too old to judge by

    def _evaluate(self) -> str | None:
        values = self.values
        if not values:
            return OFFLINE
        state = self.state
        for name, condition in self.rules.rules:
            if condition(values, state):
                return name
        return None  # no rule holds: the state stays as it is

    def _apply(self, raw: str | None, ts: int, out: Output) -> None:
        if raw is None or raw == self.state:
            self.pending = None
            return
        if raw == OFFLINE or not self.rules.min_duration:
            self._commit(raw, ts, out)  # offline is a fact, not debounced
            return
        pending = self.pending
        if self.state in (None, OFFLINE):
            # data is back from `ts` on, whichever state it settles in: that start stays
            if pending is None or pending[0] != raw:
                self.pending = (raw, pending[1] if pending is not None else ts, ts)
        elif pending is None or pending[0] != raw:
            self.pending = (raw, ts, ts)  # a shorter one before is absorbed by the state before

    def _commit(self, state: str, at: int, out: Output) -> None:
        if self.state is not None and at > self.since:
            out.intervals.append((self.machine, self.since, at, self.state))
        elif self.state is not None and at < self.since:
            return  # never rewrite what was already closed
        self.state = state
        self.since = at
        self.pending = None

    def _event(self, out: Output, role: str, tag: str, event: Event, value: Value) -> None:
        out.events[f"counter_{event}"] += 1
        key = f"{self.machine}/{tag}/{event}"
        if event == "reset":
            out.notes.append((key, f"{self.machine}: {role} counter {tag!r} dropped to "
                              f"{value!r}: counted as a reset (from zero)"))
        elif event == "noise":
            out.notes.append((key, f"{self.machine}: {role} counter {tag!r} ran backwards to "
                              f"{value!r}; ignored as noise (reset_below)"))

    # the present -------------------------------------------------------------------------------
    def tail(self, now: int, lag: int = 0) -> list[Interval]:
        """The open state up to `now` as time alone would decide it: a pending state that
        has lasted long enough, offline after `offline_after` without a good reading."""
        return project(self.state, self.since, self.pending, self.last_good,
                       self.rules.min_duration, self.rules.offline_after, now, lag)

    # checkpoint --------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        return {
            "v": CHECKPOINT_VERSION, "state": self.state, "since": self.since,
            "pending": list(self.pending) if self.pending else None,
            "values": self.values, "last_good": self.last_good, "upto": self.upto,
            "refs": {role: t.ref for role, t in self.trackers.items()}, "begin": self.begin, "lag": self.lag,
            "min_duration": self.rules.min_duration, "offline_after": self.rules.offline_after,
        }

    def _restore(self, data: dict[str, Any]) -> None:
        if data.get("v") != CHECKPOINT_VERSION:
            return
        self.state = data.get("state")
        self.since = int(data.get("since") or 0)
        pending = data.get("pending")
        self.pending = ((str(pending[0]), int(pending[1]), int(pending[-1]))
                        if pending else None)
        self.values = {k: v for k, v in (data.get("values") or {}).items()
                       if k in self.rules.rule_tags}
        self.last_good = data.get("last_good")
        self.upto = int(data.get("upto") or 0)
        self.begin = data.get("begin")
        self.lag = int(data.get("lag") or 0)
        for role, ref in (data.get("refs") or {}).items():
            if role in self.trackers:
                self.trackers[role].ref = ref


def project(state: str | None, since: int, pending: Sequence[Any] | None,
            last_good: int | None, min_duration: int, offline_after: int,
            now: int, lag: int = 0) -> list[Interval]:
    """The intervals from `since` to `now` that a machine in `state` (with `pending`) is in
    when no further reading arrives. `lag` is how far the readings' clock was behind this
    box's when they were last taken in (the hold, a device clock behind): time alone decides
    up to `now - lag` only."""
    judge = now - max(lag, 0)
    if state is None:
        if pending is None or judge - pending[-1] < min_duration:
            return []
        state, since, pending = pending[0], pending[1], None
    if now <= since:
        return []
    out: list[Interval] = []
    gone = last_good + offline_after if last_good is not None else None
    until = min(judge, gone) if gone is not None else judge
    if (pending is not None and since < pending[1] and pending[-1] < until
            and until - pending[-1] >= min_duration):
        out.append((since, pending[1], state))
        state, since = pending[0], pending[1]
    if gone is not None and gone < judge and state != OFFLINE:
        if gone > since:
            out.append((since, gone, state))
        state, since = OFFLINE, max(gone, since)
    out.append((since, now, state))
    return out
