"""The one normalisation step every raw value of a tag passes through, in the order Home
Assistant's modbus entity uses: the NaN sentinel, then scale and offset, then the clamp.

`make_normaliser` is called once per tag at start-up and returns None when the tag changes
nothing (scale 1, offset 0, no clamp, no sentinel), so the hot paths of the adapters skip the
call entirely for most tags. The deadband is not here: it compares a value with the last one
kept, which is the pipeline's `ChangeFilter`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from collector.model import Value

# a normaliser returns None when the raw value means "no value" (the configured sentinel, or
# no value at all): the adapter stores a BAD reading without a value for it
Normaliser = Callable[[Value], Value]


class NormalisedTag(Protocol):
    """The options of a tag's config (`collector.config.TagConfig`) the normaliser reads."""

    @property
    def scale(self) -> float: ...
    @property
    def offset(self) -> float: ...
    @property
    def clamp_min(self) -> float | None: ...
    @property
    def clamp_max(self) -> float | None: ...
    @property
    def nan_value(self) -> int | float | None: ...


def normaliser_of(tag: NormalisedTag) -> Normaliser | None:
    """The tag's normaliser, or None when its values pass unchanged."""
    return make_normaliser(tag.scale, tag.offset, tag.clamp_min, tag.clamp_max, tag.nan_value)


def make_normaliser(scale: float = 1.0, offset: float = 0.0, clamp_min: float | None = None,
                    clamp_max: float | None = None,
                    nan_value: int | float | None = None) -> Normaliser | None:
    """`raw == nan_value` -> None; else `raw * scale + offset`, held within clamp_min..clamp_max.

    Numbers only: booleans and text pass through unchanged. A value that is not scaled keeps
    its type (an int64 counter stays exact), and so does a clamped int where the bound is a
    whole number."""
    scaled = scale != 1.0 or offset != 0.0
    if not scaled and clamp_min is None and clamp_max is None and nan_value is None:
        return None
    if nan_value is None and clamp_min is None and clamp_max is None:
        return _scale_offset(scale, offset)  # the usual case of a normalised tag: keep it lean

    low = -float("inf") if clamp_min is None else float(clamp_min)
    high = float("inf") if clamp_max is None else float(clamp_max)
    low_int, high_int = _whole(low), _whole(high)

    def normalise(value: Value) -> Value:
        cls = value.__class__
        if cls is not float and cls is not int:
            return value  # bool, text; None stays None (no value)
        if value == nan_value:
            return None
        if scaled:
            value = value * scale + offset  # type: ignore[operator]
        if value < low:  # type: ignore[operator]
            return low_int if value.__class__ is int else low
        if value > high:  # type: ignore[operator]
            return high_int if value.__class__ is int else high
        return value

    return normalise


def _scale_offset(scale: float, offset: float) -> Normaliser:
    def normalise(value: Value) -> Value:
        cls = value.__class__
        if cls is float or cls is int:
            return value * scale + offset  # type: ignore[operator]
        return value

    return normalise


def _whole(bound: float) -> int | float:
    """The bound as an int when it is a whole number, so a clamped int stays an int."""
    return int(bound) if bound.is_integer() else bound
