"""Device profiles: a device's tag list written once and reused by every source that reads
such a device.

```yaml
sources:
  - id: energy
    protocol: modbus
    host: 192.168.0.50
    profile: profiles/sdm630.yaml      # relative to this config file
    tags:                              # optional: per-machine changes
      - {name: power_total, scale: 0.001, unit: kW}     # a profile tag by name: these fields change
      - {name: energy_export, omit: true}               # a profile tag this machine does not read
      - {name: demand, register: input, address: 84, type: float32}   # an extra tag
```

A profile file holds `tags:` (as a source's) and, for people, `device:` and `reference:` (the
document and section the register map comes from), and optionally `protocol:` (checked against
the source's). The profile's tags are merged into the source before validation, so they are
checked exactly like tags written in the config; a problem in a profile tag names the profile
file and its line, and the source that uses it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.yamlfile import Problem, duplicate_keys, format_path, yaml_problem
from collector.yamlfile import line_of as _line_of

PROFILE_KEYS = ("device", "reference", "protocol", "notes", "tags")
_TAG_PATH = re.compile(r"^machines\[(\d+)\]\.sources\[(\d+)\]\.tags\[(\d+)\](.*)$")


@dataclass
class TagOrigin:
    """Where a merged tag was written: a profile's entry, the config's, or both."""

    profile: str  # the path as written in the config
    profile_index: int | None  # index in the profile's tags (None: an extra tag)
    config_index: int | None  # index in the source's tags (None: taken as the profile has it)
    overridden: frozenset[str] = frozenset()  # fields the config entry sets


@dataclass
class ProfileUse:
    """One source's profile: the file, its parsed YAML node (for lines), and what it is for."""

    machine: str
    source: str
    path: str  # as written
    file: Path
    node: Any
    shown: str = ""  # the file as messages name it: relative to the current folder
    device: str | None = None
    reference: str | None = None


@dataclass
class Profiles:
    """Every profile a config uses and where each merged tag came from."""

    uses: dict[tuple[int, int], ProfileUse] = field(default_factory=dict)
    origins: dict[tuple[int, int, int], TagOrigin] = field(default_factory=dict)

    def origin(self, mi: int, si: int, ti: int) -> TagOrigin | None:
        return self.origins.get((mi, si, ti))

    def relocate(self, problem: Problem, node: Any) -> Problem:
        """A problem about a merged tag, pointed at the line that holds the faulty field:
        the config's override entry, or the profile file's tag."""
        match = _TAG_PATH.match(problem.path)
        if not match:
            return problem
        mi, si, ti = (int(g) for g in match.groups()[:3])
        rest = match.group(4)
        origin = self.origins.get((mi, si, ti))
        if origin is None:
            return problem
        use = self.uses[(mi, si)]
        first = re.match(r"^\.([A-Za-z_][A-Za-z0-9_]*)", rest)
        field_name = first.group(1) if first else None
        in_config = origin.config_index is not None and (
            origin.profile_index is None or field_name in origin.overridden)
        message = problem.message
        if in_config:
            assert origin.config_index is not None
            path = f"machines[{mi}].sources[{si}].tags[{origin.config_index}]{rest}"
            if origin.profile_index is None and "required field is missing" in message:
                message += (f" (no tag of this name in the profile {use.path} to change; "
                            f"check the name, or give the extra tag all its fields)")
            return Problem(path, message, _line_of(node, _loc(path)))
        assert origin.profile_index is not None
        path = f"tags[{origin.profile_index}]{rest}"
        return Problem(path, f"{message} (profile of machine {use.machine!r} source "
                       f"{use.source!r}, machines[{mi}].sources[{si}].profile)",
                       _line_of(use.node, _loc(path)), file=use.shown)


def _loc(path: str) -> tuple[Any, ...]:
    return tuple(name if name else int(index)
                 for name, index in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path))


def apply_profiles(data: dict[str, Any], node: Any, base_dir: str,
                   problems: list[Problem]) -> Profiles:
    """Merge each source's `profile:` tags into its `tags:` in `data` (in place); problems
    with the profile files themselves go to `problems`."""
    profiles = Profiles()
    machines = data.get("machines")
    if not isinstance(machines, list):
        return profiles
    for mi, machine in enumerate(machines):
        sources = machine.get("sources") if isinstance(machine, dict) else None
        if not isinstance(sources, list):
            continue
        for si, source in enumerate(sources):
            if not isinstance(source, dict) or source.get("profile") is None:
                continue
            where = ("machines", mi, "sources", si, "profile")
            here = _line_of(node, where)
            use = _load(source, str(machine.get("id")), base_dir, format_path(where), here,
                        problems)
            if use is None:
                continue
            profiles.uses[(mi, si)] = use
            _merge(source, use, mi, si, node, profiles, problems)
    return profiles


def _load(source: dict[str, Any], machine: str, base_dir: str, path: str, line: int | None,
          problems: list[Problem]) -> ProfileUse | None:
    written = source["profile"]
    if not isinstance(written, str) or not written.strip():
        problems.append(Problem(path, "must be the path of a profile file, e.g. "
                                "profiles/sdm630.yaml (relative to this config file)", line))
        return None
    file = Path(written)
    if not file.is_absolute():
        file = Path(base_dir) / file
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(Problem(path, f"profile file {written!r} not found (looked for "
                                f"{file}); a relative path starts at the config file's "
                                f"folder", line))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        problems.append(Problem(path, f"cannot read profile file {written!r}: {why}", line))
        return None
    try:
        content = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as exc:
        bad = yaml_problem(exc)
        problems.append(Problem("", bad.message, bad.line, bad.column,
                                file=os.path.relpath(file)))
        return None
    shown = os.path.relpath(file) if not Path(written).is_absolute() else written
    use = ProfileUse(machine, str(source.get("id")), written, file, tree, shown=shown)
    used_by = f" (profile of machine {machine!r} source {use.source!r}, {path})"
    found = [Problem(p.path, p.message + used_by, p.line, file=shown)
             for p in duplicate_keys(tree)]
    if not isinstance(content, dict) or not isinstance(content.get("tags"), list):
        found.append(Problem("", "a profile is a YAML mapping with `tags:` (a list of tags, "
                             "written as under a source) and, for people, `device:` and "
                             "`reference:`" + used_by, 1, file=shown))
    else:
        for key in content:
            if key not in PROFILE_KEYS:
                found.append(Problem(str(key), f"unknown field {str(key)!r} in a profile; a "
                                     f"profile has {', '.join(PROFILE_KEYS)}" + used_by,
                                     _line_of(tree, (key,)), file=shown))
        protocol = content.get("protocol")
        if protocol is not None and protocol != source.get("protocol"):
            found.append(Problem(path, f"profile {written!r} is for protocol {protocol!r}, "
                                 f"but this source is {source.get('protocol')!r}; use a "
                                 f"{source.get('protocol')} profile", line))
        for ti, tag in enumerate(content["tags"]):
            if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
                found.append(Problem(f"tags[{ti}]", "each profile tag needs a `name:`" +
                                     used_by, _line_of(tree, ("tags", ti)), file=shown))
    problems += found
    if found:
        return None
    use.device = content.get("device")
    use.reference = content.get("reference")
    use.node = tree
    source["_profile_tags"] = content["tags"]
    return use


def _merge(source: dict[str, Any], use: ProfileUse, mi: int, si: int, node: Any,
           profiles: Profiles, problems: list[Problem]) -> None:
    base: list[dict[str, Any]] = source.pop("_profile_tags")
    given = source.get("tags") or []
    if not isinstance(given, list):
        return  # reported by validation ("must be a list")
    names = {tag["name"]: j for j, tag in enumerate(base)}
    changes: dict[int, tuple[int, dict[str, Any]]] = {}
    extras: list[tuple[int, dict[str, Any]]] = []
    for k, entry in enumerate(given):
        if isinstance(entry, dict) and entry.get("name") in names:
            changes[names[entry["name"]]] = (k, entry)
        else:
            extras.append((k, entry))
    merged: list[Any] = []
    for j, tag in enumerate(base):
        k_entry = changes.get(j)
        if k_entry is None:
            profiles.origins[(mi, si, len(merged))] = TagOrigin(use.path, j, None)
            merged.append(dict(tag))
            continue
        k, entry = k_entry
        omit = entry.get("omit")
        if omit is True:
            continue
        if omit is not None and omit is not False:
            problems.append(Problem(f"machines[{mi}].sources[{si}].tags[{k}].omit",
                                    "must be true (leave this profile tag out) or false",
                                    _line_of(node, ("machines", mi, "sources", si, "tags", k,
                                                    "omit"))))
        change = {key: value for key, value in entry.items() if key != "omit"}
        profiles.origins[(mi, si, len(merged))] = TagOrigin(
            use.path, j, k, frozenset(key for key in change if key != "name"))
        merged.append({**tag, **change})
    for k, entry in extras:
        if isinstance(entry, dict) and "omit" in entry:
            problems.append(Problem(f"machines[{mi}].sources[{si}].tags[{k}].omit",
                                    f"there is no tag {entry.get('name')!r} in the profile "
                                    f"{use.path} to leave out; check the name",
                                    _line_of(node, ("machines", mi, "sources", si, "tags", k,
                                                    "omit"))))
            continue
        profiles.origins[(mi, si, len(merged))] = TagOrigin(use.path, None, k)
        merged.append(entry)
    source["tags"] = merged
