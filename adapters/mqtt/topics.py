"""Topic filters with named levels: `plant1/+/{machine}/{tag}`.

A topic template is an MQTT topic filter in which a whole level may be written `{name}`: it
subscribes like `+` and binds that level's text to `name`. `{machine}` sends the reading to the
machine of that id, `{tag}` (or any other name) can be used in the tag's `name`
(`name: "{tag}"`, `name: "temp_{probe}"`). `Router` finds, for a received topic, every tag
it feeds, and caches the answer because sensors publish to the same topics again and again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_VAR = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")
_NAME_PART = re.compile(r"\{([^{}]*)\}")
_NAME_TEMPLATE = re.compile(r"^(?:[a-z0-9_]|\{[a-z_][a-z0-9_]*\})+$")
_MACHINE_BAD = re.compile(r"[^a-z0-9-]+")
_TAG_BAD = re.compile(r"[^a-z0-9]+")
MAX_LEVELS = 64


@dataclass(frozen=True)
class TopicTemplate:
    """A parsed topic template: its subscription filter and where each name is bound."""

    text: str
    levels: tuple[str, ...]  # '+', '#', a literal, or '' for a bound level
    names: tuple[str | None, ...]  # the bound name of each level, else None

    @property
    def filter(self) -> str:
        """The MQTT subscription filter (`{name}` levels become `+`)."""
        return "/".join("+" if n is not None else lv for lv, n in zip(self.levels, self.names, strict=True))

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n is not None)

    @property
    def is_wildcard(self) -> bool:
        return any(n is not None or lv in ("+", "#") for lv, n in zip(self.levels, self.names, strict=True))

    def match(self, topic_levels: Sequence[str]) -> dict[str, str] | None:
        """The bindings when a topic (split at '/') matches, else None."""
        levels = self.levels
        names = self.names
        count = len(levels)
        if count and levels[-1] == "#":
            if len(topic_levels) < count - 1:
                return None
            count -= 1
        elif len(topic_levels) != count:
            return None
        if topic_levels and topic_levels[0].startswith("$") and (
                names[0] is not None or levels[0] in ("+", "#")):
            return None  # wildcards never match $SYS-style topics (MQTT 4.7.2)
        bound: dict[str, str] = {}
        for i in range(count):
            name = names[i]
            if name is not None:
                bound[name] = topic_levels[i]
            elif levels[i] != "+" and levels[i] != topic_levels[i]:
                return None
        return bound


def parse_topic(text: str) -> TopicTemplate:
    """Check a topic template; ValueError says exactly which level is wrong and how to fix it."""
    if not text:
        raise ValueError("topic is empty; write the topic the sensor publishes to, e.g. plant1/press07/temp")
    if text.startswith("$share/") or text.startswith("$queue/"):
        raise ValueError("shared subscriptions ($share/...) are not supported; subscribe to the topic itself")
    if "\x00" in text or len(text.encode()) > 65535:
        raise ValueError("topic contains a NUL character or is longer than 65535 bytes")
    raw = text.split("/")
    if len(raw) > MAX_LEVELS:
        raise ValueError(f"topic has {len(raw)} levels; at most {MAX_LEVELS} are supported")
    levels: list[str] = []
    names: list[str | None] = []
    for i, level in enumerate(raw):
        var = _VAR.match(level)
        if var:
            name = var.group(1)
            if name in names:
                raise ValueError(f"topic {text!r} binds {{{name}}} twice; give each bound level its own name")
            levels.append("")
            names.append(name)
            continue
        if "{" in level or "}" in level:
            raise ValueError(f"topic {text!r}: level {level!r} must be a whole-level name such as "
                             "{machine} or {tag} (lowercase letters, digits, '_'), not part of a level")
        if level == "#" and i != len(raw) - 1:
            raise ValueError(f"topic {text!r}: '#' is only allowed as the last level")
        if level not in ("+", "#") and ("+" in level or "#" in level):
            raise ValueError(f"topic {text!r}: level {level!r} mixes a wildcard with text; "
                             "'+' and '#' must stand alone between slashes")
        levels.append(level)
        names.append(None)
    return TopicTemplate(text, tuple(levels), tuple(names))


def name_variables(name: str) -> list[str]:
    """The `{names}` a tag name template uses; ValueError when the template is malformed."""
    if not _NAME_TEMPLATE.match(name):
        bad = [p for p in _NAME_PART.findall(name) if not re.fullmatch(r"[a-z_][a-z0-9_]*", p)]
        hint = f" ({{{bad[0]}}} is not a valid name)" if bad else ""
        raise ValueError(f"tag name {name!r} may only contain lowercase letters, digits, '_' and "
                         f"{{name}} parts bound by the topic{hint}")
    return _NAME_PART.findall(name)


def machine_id(text: str) -> str:
    """A topic level as a machine id: lowercase, runs of other characters as one '_'
    (`Press 07` -> `press_07`, `Press-07` -> `press-07`)."""
    return _MACHINE_BAD.sub("_", text.strip().lower()).strip("_")[:64]


def tag_name(text: str) -> str:
    """A topic level as part of a tag name: lowercase, runs of other characters as one '_'."""
    return _TAG_BAD.sub("_", text.strip().lower()).strip("_")[:64]


def render_name(template: str, bound: dict[str, str]) -> str:
    """A tag name template with its `{names}` replaced by normalised topic levels."""
    if "{" not in template:
        return template
    return _NAME_PART.sub(lambda m: tag_name(bound.get(m.group(1), "")), template)


def covers(general: str, specific: str) -> bool:
    """True when every topic matching filter `specific` also matches filter `general`."""
    g = general.split("/")
    s = specific.split("/")
    for i, level in enumerate(g):
        if level == "#":
            return True
        if i >= len(s) or s[i] == "#":
            return False
        if level != "+" and (s[i] == "+" or s[i] != level):
            return False
    return len(g) == len(s)


def minimal_filters(filters: Iterable[str]) -> list[str]:
    """The filters to subscribe to: duplicates and filters covered by another one removed,
    so that a broker never delivers one message twice to the same source."""
    unique = list(dict.fromkeys(filters))
    keep = []
    for i, f in enumerate(unique):
        covered = any(covers(o, f) and (not covers(f, o) or j < i) for j, o in enumerate(unique) if j != i)
        if not covered:
            keep.append(f)
    return keep


class Router(Generic[T]):
    """Finds the routes (one per tag) a topic feeds, with the bindings of each; cached."""

    def __init__(self, routes: Iterable[tuple[TopicTemplate, T]], cache_size: int = 50_000):
        self._exact: dict[str, list[T]] = {}
        self._patterns: list[tuple[TopicTemplate, T]] = []
        for template, route in routes:
            if template.is_wildcard:
                self._patterns.append((template, route))
            else:
                self._exact.setdefault(template.text, []).append(route)
        self._cache: dict[str, list[tuple[T, dict[str, str]]]] = {}
        self._cache_size = cache_size

    def lookup(self, topic: str) -> list[tuple[T, dict[str, str]]]:
        """Every (route, bindings) whose template matches `topic`; empty when none does."""
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        found: list[tuple[T, dict[str, str]]] = [(r, {}) for r in self._exact.get(topic, ())]
        if self._patterns:
            levels = topic.split("/")
            for template, route in self._patterns:
                bound = template.match(levels)
                if bound is not None:
                    found.append((route, bound))
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # topics that churn (ids in topics): start over rather than grow
        self._cache[topic] = found
        return found
