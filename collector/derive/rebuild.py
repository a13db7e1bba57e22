"""`collector rebuild`: derive a machine's states, counts and downtimes again from the stored
readings, after its rules changed or for history from before derivation began.

A range that ends before the machine's open state (the live checkpoint) is spliced in: what
lies after it stays as it is. Without a checkpoint (derivation never ran for the machine) the
rebuild also writes one, so `collector run` continues from its end.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.config import CollectorConfig
from collector.derive.engine import Derivation
from collector.derive.report import ProductionReport
from collector.derive.rules import compile_rules
from collector.ledger import Ledger
from collector.ledger.production import MINUTE
from collector.model import NotAnInstant, format_ts, now_us, parse_instant


class RebuildError(ValueError):
    """A rebuild that cannot start: the message says what to change."""


@dataclass(frozen=True)
class RebuildResult:
    machine: str
    start: int
    end: int
    intervals: int
    parts: int
    readings: int
    spliced: bool

    def summary(self) -> str:
        how = "spliced in before the live state" if self.spliced else "checkpoint written"
        return (f"{self.machine}: derived again from {format_ts(self.start)} to "
                f"{format_ts(self.end)}: {self.readings} readings, {self.intervals} state "
                f"intervals, {self.parts} parts ({how})")


def parse_when(name: str, text: str) -> int:
    """RFC 3339 (with Z or an offset) or integer epoch milliseconds, as epoch µs."""
    try:
        return parse_instant(text)
    except NotAnInstant as exc:
        raise RebuildError(f"--{name} {text!r} {exc}") from None


async def rebuild(config: CollectorConfig, machine: str, start: int, end: int,
                  ledger: Ledger | None = None) -> RebuildResult:
    """Derive `machine` again over [start, end) from the ledger's readings."""
    found = [m for m in config.machines if m.id == machine]
    if not found:
        known = ", ".join(m.id for m in config.machines) or "none"
        raise RebuildError(f"machine {machine!r} is not in the config (machines: {known})")
    rules = compile_rules(found[0])
    if rules is None:
        raise RebuildError(f"machine {machine!r} has no `production:` section to derive from")
    end = min(end, now_us())
    if end <= start:
        raise RebuildError("--start must be earlier than --end (and than now)")
    own = ledger is None
    if ledger is None:
        ledger = Ledger(config.ledger.url, schema=config.ledger.db_schema, box=config.box)
        await ledger.open()
    try:
        derivation = Derivation([rules], ledger)
        checkpoint = (await ledger.production.checkpoints([machine])).get(machine)
        spliced = checkpoint is not None
        if checkpoint is not None and checkpoint.since is not None:
            end = min(end, checkpoint.since)
        elif checkpoint is not None:
            end = min(end, checkpoint.upto)
        if spliced and end // MINUTE * MINUTE <= start // MINUTE * MINUTE:
            raise RebuildError(
                f"nothing to derive again: {machine!r} has been in its live state since "
                f"{format_ts(end)}; choose a --start before that")
        readings_before = derivation.stats["readings"]
        md, _ = await derivation.rederive(machine, start, end, splice=spliced)
        intervals = await ledger.production.intervals(machine, start, end)
        sums = await ledger.production.sums(machine, start // MINUTE * MINUTE, end)
        parts = ProductionReport.roles(rules, sums)[0]
        return RebuildResult(machine, start // MINUTE * MINUTE,
                             end // MINUTE * MINUTE if spliced else md.upto, len(intervals),
                             parts, derivation.stats["readings"] - readings_before, spliced)
    finally:
        if own:
            await ledger.close()
