"""Health per tag: a source can be connected and delivering while one of its tags never reads.

Every reading an adapter hands over passes a `TagWatch` of its source first (before deadband
and heartbeat, so a value that does not change still counts as fresh). A tag is **bad** while
its newest reading is bad, and **stale** when it has had no good reading for its `stale_after`:
by default three poll intervals (at least 2 s) for sources that poll (Modbus, OPC UA in poll
mode); never for pushed data (MQTT, OPC UA subscriptions), which only arrives on change,
unless `stale_after` is set on the source or the tag (the device's own publishing period
or heartbeat, with some margin). `stale_after: 0` turns staleness off.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from collector.model import GOOD, Quality, Reading, format_ts, now_us

if TYPE_CHECKING:
    from adapters.base import ReadingSink
    from collector.config import SourceConfig
    from collector.model import SourceHealth

STALE_INTERVALS = 3
STALE_MIN = 2.0  # seconds: a fast poll's jitter is not silence


def stale_limit(source: SourceConfig, tag_stale_after: float | None = None) -> float | None:
    """Seconds without a good reading after which a tag of this source is stale; None: never.
    The tag's own `stale_after` wins over the source's, which wins over the default."""
    for given in (tag_stale_after, source.stale_after):
        if given is not None:
            return given or None  # 0 turns it off
    interval = source.poll_interval()
    if interval is None:
        return None  # pushed on change: silence may just mean nothing changed
    return max(STALE_INTERVALS * interval, STALE_MIN)


def is_template(name: str, tag: object) -> bool:
    """A tag name bound at run time (an MQTT topic template): no readings carry it as written."""
    return "{" in name or bool(getattr(tag, "is_template", False))


@dataclass
class TagState:
    limit: float | None  # seconds; None: never stale
    last_good: int | None = None  # epoch µs of the newest good reading
    bad_since: int | None = None  # epoch µs of the bad reading that started a bad spell


@dataclass(frozen=True)
class TagProblem:
    tag: str
    problem: Literal["bad", "stale"]
    since: int | None  # epoch µs: the first bad reading, or the last good one
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"tag": self.tag, "problem": self.problem,
                "since": format_ts(self.since) if self.since else None, "reason": self.reason}


class TagWatch:
    """What each tag of one source last delivered, and which of them are bad or stale."""

    def __init__(self, source: SourceConfig, health: SourceHealth, started: int | None = None):
        self.health = health
        self.started = started if started is not None else now_us()
        self.default_limit = stale_limit(source)
        self.tags: dict[str, TagState] = {
            tag.name: TagState(stale_limit(source, getattr(tag, "stale_after", None)))
            for tag in source.tags if not is_template(tag.name, tag)
        }

    def seen(self, readings: Iterable[Reading]) -> None:
        tags = self.tags
        for reading in readings:
            state = tags.get(reading.tag)
            if state is None:  # a name bound at run time (topic templates, automatic tags)
                state = tags[reading.tag] = TagState(self.default_limit)
            if reading.quality is GOOD or reading.quality == Quality.UNCERTAIN:
                if state.last_good is None or reading.ts > state.last_good:
                    state.last_good = reading.ts
                state.bad_since = None
            elif state.bad_since is None:
                state.bad_since = reading.ts

    def problems(self, now: int | None = None) -> list[TagProblem]:
        """The tags that are bad or stale now, in config order."""
        now = now_us() if now is None else now
        out: list[TagProblem] = []
        for name, state in self.tags.items():
            if state.bad_since is not None:
                out.append(TagProblem(name, "bad", state.bad_since, self._why_bad(name)))
            elif state.limit is not None:
                since = state.last_good if state.last_good is not None else self.started
                silent = (now - since) / 1e6
                if silent > state.limit:
                    out.append(TagProblem(name, "stale", state.last_good,
                                          self._why_stale(name, state, silent)))
        return out

    def _why_bad(self, name: str) -> str:
        error = self._error_naming(name, self.tags[name].bad_since)
        if error:
            return error
        return ("the device gave no usable value (not a number, or the tag's nan_value); "
                "check the tag's type, byte_order and address")

    def _why_stale(self, name: str, state: TagState, silent: float) -> str:
        never = state.last_good is None
        head = (f"no reading since the collector started {_seconds(silent)} ago" if never
                else f"no new reading for {_seconds(silent)}")
        head += f" (stale after {_seconds(state.limit or 0)})"
        health = self.health
        if not health.connected:
            return f"{head}; the source is not connected" + (
                f": {health.last_error}" if health.last_error else "")
        error = self._error_naming(name, state.last_good or self.started)
        if error:
            return f"{head}; {error}"
        return (f"{head}; the source answers but this tag's value does not arrive: check "
                f"its address, node or topic, and how often the device sends it (stale_after)")

    def _error_naming(self, name: str, since: int | None) -> str | None:
        """The newest source error since `since` (µs) that names this tag."""
        word = re.compile(rf"(?<![a-z0-9_]){re.escape(name)}(?![a-z0-9_])")
        after = (since or 0) - 5_000_000  # an error is noted just before its bad reading
        prefix = f"machine {self.health.machine!r} source {self.health.source!r}: "
        for at, message in reversed(self.health.recent_errors):
            if at >= after and word.search(message):
                return message.removeprefix(prefix)  # the tag's own line already says where
        return None


class WatchedSink:
    """The pipeline as an adapter sees it, noting each reading in the source's `TagWatch`."""

    def __init__(self, sink: ReadingSink, watch: TagWatch):
        self.sink = sink
        self.watch = watch

    async def put(self, readings: Sequence[Reading], *, wait: bool = False) -> None:
        self.watch.seen(readings)
        await self.sink.put(readings, wait=wait)


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s".replace(".0 s", " s")
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def describe(machine: str, source: str, problem: TagProblem) -> str:
    """One sentence naming the machine, source and tag, for `/api/v1/health`'s `problems`."""
    return (f"machine {machine!r} source {source!r} tag {problem.tag!r} is {problem.problem}: "
            f"{problem.reason}")
