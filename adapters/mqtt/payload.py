"""Turning an MQTT payload into a value and an optional device timestamp.

A payload is plain text (`21.5`, `true`, `RUN`) or JSON; a tag with a `json` path picks one
value out of the document (`sensors[0].temp`), a tag with a `timestamp` path picks the device
time (epoch s / ms / µs or RFC 3339 text). Every way a payload can be wrong raises
`PayloadError` with a short reason: the adapter counts it and stores a BAD reading, never crashes.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, Literal

from collector.model import Value, us_from_datetime
from collector.sources.normalise import Normaliser

PathStep = str | int
ValueType = Literal["number", "bool", "text", "auto"]
TimestampUnit = Literal["auto", "s", "ms", "us"]

_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}
_STEP = re.compile(r"""\.?([^.\[\]"']+)|\[\s*(-?\d+)\s*\]|\[\s*"([^"]*)"\s*\]|\[\s*'([^']*)'\s*\]""")


class PayloadError(ValueError):
    """A payload that cannot give this tag a value; the message says why, in a few words."""


def parse_path(text: str) -> tuple[PathStep, ...]:
    """`a.b[0].c`, `$.a.b`, `[2]`, `a["key.with.dots"]` as a tuple of keys and indices.

    Raises ValueError with a message for a technician when the path is malformed."""
    source = text.strip()
    if source.startswith("$"):
        source = source[1:]
    if not source:
        return ()  # the whole document
    steps: list[PathStep] = []
    pos = 0
    while pos < len(source):
        match = _STEP.match(source, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"json path {text!r} is not valid at {source[pos:]!r}; write keys "
                             "separated by dots and list positions in brackets, e.g. sensors[0].temp")
        key, index, dq, sq = match.groups()
        if key is not None:
            if pos > 0 and source[pos] != ".":
                raise ValueError(f"json path {text!r}: put a dot before {key!r}")
            steps.append(key.strip())
        elif index is not None:
            steps.append(int(index))
        else:
            steps.append(dq if dq is not None else sq)
        pos = match.end()
    return tuple(steps)


def format_path(steps: tuple[PathStep, ...]) -> str:
    """The inverse of `parse_path`, as the watch tool prints paths."""
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z0-9_\-]+", step):
            out += ("." if out else "") + step
        else:
            out += f'["{step}"]'
    return out


def parse_json(raw: bytes) -> Any:
    """The JSON document of a payload, or PayloadError (truncated, not UTF-8, ...)."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8 text") from None
    except ValueError as exc:
        reason = str(exc).split(":")[0]
        raise PayloadError(f"payload is not valid JSON ({reason})") from None
    except RecursionError:
        raise PayloadError("payload JSON is nested too deeply") from None


def walk(doc: Any, path: tuple[PathStep, ...], label: str) -> Any:
    """The value at `path` in a JSON document, or PayloadError naming the missing step."""
    node = doc
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, list):
                raise PayloadError(f"{label}: expected a list before [{step}], found {_kind(node)}")
            try:
                node = node[step]
            except IndexError:
                raise PayloadError(f"{label}: list has no item [{step}] (length {len(node)})") from None
        else:
            if isinstance(node, dict):
                if step not in node:
                    raise PayloadError(f"{label}: key {step!r} is missing")
                node = node[step]
            elif isinstance(node, list) and step.lstrip("-").isdigit():
                try:
                    node = node[int(step)]
                except IndexError:
                    raise PayloadError(f"{label}: list has no item [{step}]") from None
            else:
                raise PayloadError(f"{label}: expected an object before {step!r}, found {_kind(node)}")
    return node


def _kind(node: Any) -> str:
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "true/false"
    if isinstance(node, int | float):
        return "a number"
    if isinstance(node, str):
        return "text"
    if isinstance(node, list):
        return "a list"
    return "an object"


def plain_value(raw: bytes) -> Value:
    """A non-JSON payload: `true`/`false`, a number, else the text itself."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8 text") from None
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


# integers the ledger keeps exactly: int64 and uint64
_INT_MIN, _INT_END = -(2**63), 2**64


def _exact_int(value: int) -> int:
    if not _INT_MIN <= value < _INT_END:
        raise PayloadError(f"integer {_short(str(value))} does not fit in 64 bits (from "
                           f"-2^63 to 2^64-1); send it as a decimal number or text")
    return value


def coerce(value: Any, kind: ValueType) -> Value:
    """Check a decoded value against the tag's `type`; text holding a number counts as one.
    Integers stay exact (to 64 bits, signed or unsigned); larger ones are refused."""
    if kind == "number":
        if isinstance(value, bool):
            raise PayloadError(f"expected a number, got {str(value).lower()}")
        if isinstance(value, int):
            return _exact_int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise PayloadError(f"expected a finite number, got {value}")
            return value
        if isinstance(value, str):
            if value.strip().lstrip("+-").isdigit():  # an integer in text: exact, not via a double
                return _exact_int(int(value))
            try:
                number = float(value)
            except ValueError:
                raise PayloadError(f"expected a number, got text {_short(value)!r}") from None
            if not math.isfinite(number):
                raise PayloadError(f"expected a finite number, got {value!r}")
            return number
        raise PayloadError(f"expected a number, got {_kind(value)}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return value != 0
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        raise PayloadError(f"expected true/false, got {_short(repr(value))}")
    if kind == "text":
        if isinstance(value, str):
            return value
        if value is None:
            raise PayloadError("expected text, got null")
        return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else (
            str(value).lower() if isinstance(value, bool) else str(value))
    # auto
    if value is None or isinstance(value, dict | list):
        raise PayloadError(f"expected a number, true/false or text, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"expected a finite number, got {value}")
    if isinstance(value, int) and not isinstance(value, bool):
        return _exact_int(value)
    return value


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def timestamp_us(value: Any, unit: TimestampUnit = "auto") -> int:
    """Device time as epoch µs: a number (s, ms or µs; `auto` guesses by size) or RFC 3339."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                return us_from_datetime(datetime.fromisoformat(text))
            except ValueError:
                raise PayloadError(f"timestamp {_short(text)!r} is neither epoch time nor RFC 3339") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PayloadError(f"timestamp is {_kind(value)}, not epoch time or RFC 3339 text")
    if unit == "auto":
        # 1e11 s is the year 5138 and 1e11 ms is 1973: sizes tell the units apart for real clocks
        unit = "us" if abs(value) >= 1e14 else "ms" if abs(value) >= 1e11 else "s"
    factor = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    if isinstance(value, int):
        return value * factor
    return round(value * factor)


class TagDecoder:
    """Everything needed to turn one payload into one tag's value, prepared at start-up."""

    __slots__ = ("path", "ts_path", "ts_unit", "kind", "normalise", "label")

    def __init__(self, json_path: str | None, timestamp: str | None, kind: ValueType = "number",
                 normalise: Normaliser | None = None, ts_unit: TimestampUnit = "auto"):
        self.path = parse_path(json_path) if json_path is not None else None
        self.ts_path = parse_path(timestamp) if timestamp is not None else None
        self.ts_unit = ts_unit
        self.kind = kind
        self.normalise = normalise  # the tag's (collector.sources.normalise); None: unchanged
        self.label = f"json path {json_path!r}" if json_path is not None else "payload"

    @property
    def needs_json(self) -> bool:
        return self.path is not None or self.ts_path is not None

    def value(self, raw: bytes, doc: Any) -> Value:
        """The normalised value, None when the payload holds the tag's `nan_value`; `doc` is
        the parsed JSON (only read when the tag has a path)."""
        if self.path is None:
            value = coerce(plain_value(raw), self.kind)
        else:
            value = coerce(walk(doc, self.path, self.label), self.kind)
        if self.normalise is not None:
            return self.normalise(value)
        return value

    def timestamp(self, doc: Any) -> int:
        """Device time of the payload in epoch µs (only called when the tag has a path)."""
        assert self.ts_path is not None
        return timestamp_us(walk(doc, self.ts_path, "timestamp"), self.ts_unit)
