"""A machine's `production:` section compiled for derivation, and its problems for `check`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collector.derive.counters import CounterTracker, PulseTracker, Tracker
from collector.derive.expr import Condition, ExprError, TagKind, compile_condition

if TYPE_CHECKING:
    from collector.config import CollectorConfig, CounterTag, MachineConfig

ROLES = ("total", "good", "reject")
MIN_OFFLINE_AFTER = 5.0  # seconds: the default never goes below this


@dataclass(frozen=True)
class CounterSpec:
    tag: str
    width: int | None = None
    pulse: bool = False
    reset_below: float | None = None

    def tracker(self) -> Tracker:
        if self.pulse:
            return PulseTracker()
        return CounterTracker(self.width, self.reset_below)


@dataclass(frozen=True)
class MachineRules:
    """What derivation needs to know about one machine."""

    machine: str
    rules: tuple[tuple[str, Condition], ...] = ()
    rule_tags: frozenset[str] = frozenset()
    min_duration: int = 0  # µs
    offline_after: int = int(MIN_OFFLINE_AFTER * 1e6)  # µs
    counter_roles: dict[str, CounterSpec] = field(default_factory=dict)  # role -> counter
    tag_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tag -> roles
    ideal_cycle: float | None = None  # seconds per part
    micro_stop: int = 120_000_000  # µs
    line: str | None = None

    @property
    def tags(self) -> frozenset[str]:
        """Every tag whose readings derivation takes in."""
        return self.rule_tags | frozenset(self.tag_roles)

    @property
    def has_states(self) -> bool:
        return bool(self.rules)


def tag_kinds(machine: MachineConfig) -> dict[str, TagKind]:
    """Each tag of the machine with what its config says about its values."""
    out: dict[str, TagKind] = {}
    for source in machine.sources:
        for tag in source.tags:
            out[tag.name] = _kind(getattr(tag, "value_type", None))
    return out


def _kind(value_type: str | None) -> TagKind:
    if value_type is None:
        return None
    if value_type == "string":
        return "text"
    if value_type == "bool":
        return "bool"
    return "number"


def _type_width(value_type: str | None) -> int | None:
    match = re.fullmatch(r"u?int(\d+)", value_type or "")
    return int(match.group(1)) if match else None


def compile_rules(machine: MachineConfig) -> MachineRules | None:
    """The machine's rules, or None without a `production:` section. The config must have
    passed `production_problems` (compile errors raise here)."""
    prod = machine.production
    if prod is None:
        return None
    kinds = tag_kinds(machine)
    rules = tuple((r.state, compile_condition(r.when, kinds)) for r in prod.states)
    rule_tags = frozenset(t for _, c in rules for t in c.tags)
    roles: dict[str, CounterSpec] = {}
    for role in (*ROLES, "energy"):
        ref = getattr(prod.counters, role, None) if role != "energy" else prod.energy
        if ref is not None:
            roles[role] = _counter_spec(machine, ref)
    tag_roles: dict[str, tuple[str, ...]] = {}
    for role, spec in roles.items():
        tag_roles[spec.tag] = (*tag_roles.get(spec.tag, ()), role)
    return MachineRules(
        machine=machine.id, rules=rules, rule_tags=rule_tags,
        min_duration=int(prod.min_duration * 1e6),
        offline_after=int(offline_after(machine, rule_tags) * 1e6),
        counter_roles=roles, tag_roles=tag_roles, ideal_cycle=prod.ideal_cycle,
        micro_stop=int(prod.micro_stop * 1e6), line=machine.line)


def _counter_spec(machine: MachineConfig, ref: CounterTag) -> CounterSpec:
    value_type = None
    for source in machine.sources:
        for tag in source.tags:
            if tag.name == ref.tag:
                value_type = getattr(tag, "value_type", None)
    return CounterSpec(tag=ref.tag, width=ref.width or _type_width(value_type),
                       pulse=ref.pulse or value_type == "bool", reset_below=ref.reset_below)


def offline_after(machine: MachineConfig, rule_tags: frozenset[str]) -> float:
    """`offline_after` as configured, else the longest silence a rule tag may keep while its
    source is fine (at least 5 s): three polls; one and a half heartbeats for a tag stored only
    on change; 60 s for MQTT. A tag that only reports changes, without a heartbeat (an OPC UA
    subscription, a deadband), can stay silent for ever: then only its source's bad readings
    (sent when the connection is lost) make the machine offline."""
    prod = machine.production
    if prod is not None and prod.offline_after is not None:
        return prod.offline_after
    seconds = MIN_OFFLINE_AFTER
    for source in machine.sources:
        for tag in source.tags:
            if tag.name in rule_tags:
                seconds = max(seconds, _silence(source, tag))
    return seconds


SILENT_FOREVER = 10 * 365 * 86400.0  # seconds: no time limit in practice


def _silence(source: Any, tag: Any) -> float:
    if tag.heartbeat is not None:
        return 1.5 * tag.heartbeat
    if tag.deadband is not None or getattr(source, "mode", None) == "subscribe":
        return SILENT_FOREVER
    if source.protocol == "mqtt":
        return 60.0
    return 3 * source.interval


def production_problems(config: CollectorConfig) -> Iterator[tuple[str, str]]:
    """(path, message) for every production rule that cannot work."""
    for mi, machine in enumerate(config.machines):
        if machine.production is not None:
            yield from _machine_problems(f"machines[{mi}].production", machine)


def _machine_problems(path: str, machine: MachineConfig) -> Iterator[tuple[str, str]]:
    prod = machine.production
    assert prod is not None
    kinds = tag_kinds(machine)
    heartbeats = {t.name: t for s in machine.sources for t in s.tags}
    always: int | None = None
    conditions: list[Condition] = []
    for ri, rule in enumerate(prod.states):
        where = f"{path}.states[{ri}].when"
        try:
            condition = compile_condition(rule.when, kinds)
        except ExprError as exc:
            yield where, str(exc)
            continue
        conditions.append(condition)
        if always is not None:
            yield where, (f"never reached: states[{always}] above it always holds; move this "
                          "rule up or remove it")
        elif condition.constant is False:
            yield where, f"{rule.when!r} can never hold; remove the rule or fix its condition"
        elif condition.constant is True:
            always = ri
    if prod.states and always is None and len(conditions) == len(prod.states):
        yield f"{path}.states", (
            "no state applies when none of these conditions holds (a tag without a good "
            "reading makes its rule fail): end the list with a rule that always holds, "
            "e.g. {state: stopped, when: \"true\"}")
    counters = prod.counters
    if counters is not None:
        given = [role for role in ROLES if getattr(counters, role) is not None]
        if not given:
            yield f"{path}.counters", "name a counter tag: total, good or reject (any two)"
        elif given == ["reject"]:
            yield f"{path}.counters", ("a reject counter alone cannot count parts: add total "
                                       "or good")
        elif len(given) == 3:
            yield f"{path}.counters", ("give any two of total, good and reject: the third "
                                       "follows from them")
        for role in given:
            yield from _counter_problems(f"{path}.counters.{role}", getattr(counters, role),
                                         kinds)
    if prod.energy is not None:
        yield from _counter_problems(f"{path}.energy", prod.energy, kinds)
    if prod.offline_after is not None:
        if prod.offline_after <= 0:
            yield f"{path}.offline_after", "must be more than 0 s"
        for condition in conditions:
            for name in sorted(condition.tags):
                tag = heartbeats.get(name)
                beat = getattr(tag, "heartbeat", None)
                if beat is not None and beat >= prod.offline_after:
                    yield f"{path}.offline_after", (
                        f"{prod.offline_after:g} s is not longer than tag {name!r}'s heartbeat "
                        f"({beat:g} s): the machine would look offline between heartbeats")
    if prod.ideal_cycle is not None and prod.ideal_cycle <= 0:
        yield f"{path}.ideal_cycle", "must be more than 0 s (the ideal time per part)"


def _counter_problems(path: str, ref: Any, kinds: dict[str, TagKind]) -> Iterator[tuple[str, str]]:
    name = ref.tag
    if name not in kinds:
        yield path, f"unknown tag {name!r}; counters name one of this machine's tags"
    elif kinds[name] == "text":
        yield path, f"tag {name!r} is text; a counter must be a number (or a bool pulse)"
