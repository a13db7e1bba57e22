"""`collector check --explain`: per tag, in plain words, what the collector will read and what
it does with the value, and where in the YAML (or in which device profile) the tag is written.

The protocol part comes from each adapter (`AdapterSpec.explain`); the normalisation (scale,
offset, clamp, nan_value, deadband, heartbeat, stale_after) and the unit are said here, as
they are the same for every protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from collector.config import CollectorConfig, SourceConfig, TagConfig
from collector.taghealth import stale_limit
from collector.yamlfile import line_of as _line_of

Explainer = Callable[[Any, Any], list[str]]


def explain(config: CollectorConfig, path: Path, explainers: dict[str, Explainer | None]
            ) -> Iterator[str]:
    """The lines to print: a heading per tag, then its sentences indented."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):  # it was just read and parsed; lines are a courtesy
        node = None
    for mi, machine in enumerate(config.machines):
        for si, source in enumerate(machine.sources):
            describe = explainers.get(source.protocol)
            off = "" if source.enabled else "  (source disabled: nothing is read)"
            for ti, tag in enumerate(source.tags):
                yield f"{machine.id} / {source.id} / {tag.name}{off}"
                yield f"    written at {where(config, node, mi, si, ti)}"
                for line in (describe(source, tag) if describe else
                             [f"read by the {source.protocol} adapter"]):
                    yield f"    {line}"
                for line in handling(source, tag):
                    yield f"    {line}"
            if not source.tags:
                yield f"{machine.id} / {source.id}: no tags{off}"


def where(config: CollectorConfig, node: Any, mi: int, si: int, ti: int) -> str:
    """The YAML path and line, or the profile's entry and the change made in the config."""
    origin = config.tag_origin(mi, si, ti)
    own = f"machines[{mi}].sources[{si}].tags"
    if origin is None:
        return _at(f"{own}[{ti}]", _line_of(node, ("machines", mi, "sources", si, "tags", ti)))
    if origin.profile_index is None:
        return _at(f"{own}[{origin.config_index}]",
                   _line_of(node, ("machines", mi, "sources", si, "tags", origin.config_index)))
    use = config._profiles.uses[(mi, si)]
    text = _at(f"{use.shown} tags[{origin.profile_index}]",
               _line_of(use.node, ("tags", origin.profile_index)), "profile ")
    if origin.config_index is not None:
        changed = ", ".join(sorted(origin.overridden)) or "nothing"
        text += "; changed here: " + _at(
            f"{changed} at {own}[{origin.config_index}]",
            _line_of(node, ("machines", mi, "sources", si, "tags", origin.config_index)))
    return text


def _at(path: str, line: int | None, prefix: str = "") -> str:
    return f"{prefix}{path}" + (f" (line {line})" if line else "")


def handling(source: SourceConfig, tag: TagConfig) -> list[str]:
    """What happens to the value on its way into the ledger."""
    steps = []
    if tag.nan_value is not None:
        steps.append(f"a raw {tag.nan_value:g} means 'no value' (stored as bad)")
    if tag.scale != 1.0 or tag.offset != 0.0:
        offset = f" {'+' if tag.offset >= 0 else '-'} {abs(tag.offset):g}" if tag.offset else ""
        steps.append(f"value = raw x {tag.scale:g}{offset}" if tag.scale != 1.0
                     else f"value = raw{offset}")
    if tag.clamp_min is not None or tag.clamp_max is not None:
        low = f"{tag.clamp_min:g}" if tag.clamp_min is not None else "-inf"
        high = f"{tag.clamp_max:g}" if tag.clamp_max is not None else "+inf"
        steps.append(f"kept within {low} .. {high}")
    lines = ["then " + ", ".join(steps) if steps else "stored as read (no scale or offset)"]
    lines[0] += f"; unit {tag.unit}" if tag.unit else "; no unit"
    stored = []
    if tag.deadband is not None:
        stored.append(f"only changes larger than {tag.deadband:g} are stored")
    if tag.heartbeat is not None:
        stored.append(f"at least every {tag.heartbeat:g} s even without change")
    if stored:
        lines.append("; ".join(stored))
    limit = stale_limit(source, tag.stale_after)
    lines.append(f"stale (status page amber) after {limit:g} s without a good reading"
                 if limit is not None else "never stale: the device sends only on change "
                 "(set stale_after to watch it)")
    return lines
