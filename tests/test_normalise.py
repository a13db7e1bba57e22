"""The one normalisation step of raw values: sentinel, scale and offset, clamp, in that order."""

from __future__ import annotations

import pytest

from collector.config import TagConfig
from collector.sources.normalise import make_normaliser, normaliser_of


def test_a_tag_that_changes_nothing_has_no_normaliser() -> None:
    assert make_normaliser() is None
    assert normaliser_of(TagConfig(name="t")) is None
    assert normaliser_of(TagConfig(name="t", deadband=0.5, heartbeat="1m")) is None


def test_scale_and_offset() -> None:
    normalise = make_normaliser(0.1, -40)
    assert normalise is not None
    assert normalise(655) == pytest.approx(25.5)
    assert normalise(0.0) == -40.0
    assert normalise(True) is True and normalise("AUTO") == "AUTO"  # numbers only
    assert make_normaliser(offset=5)(2) == 7.0  # type: ignore[misc]


def test_the_sentinel_is_compared_with_the_raw_value() -> None:
    normalise = make_normaliser(scale=0.01, nan_value=65535)
    assert normalise is not None
    assert normalise(65535) is None
    assert normalise(65535.0) is None
    assert normalise(65534) == pytest.approx(655.34)
    assert normalise(655.35) == pytest.approx(6.5535)  # the scaled sentinel is a real value
    assert normalise(None) is None
    signed = make_normaliser(nan_value=-32768)
    assert signed is not None
    assert signed(-32768) is None and signed(-32767) == -32767
    assert make_normaliser(nan_value=1)(True) is True  # type: ignore[misc]  # a bool is no number


def test_clamp_after_scale_and_offset() -> None:
    normalise = make_normaliser(scale=0.1, clamp_min=0, clamp_max=100)
    assert normalise is not None
    assert normalise(-3) == 0.0 and type(normalise(-3)) is float
    assert normalise(1004) == 100.0
    assert normalise(555) == pytest.approx(55.5)
    assert normalise(1000) == 100.0


def test_a_clamped_integer_stays_an_integer() -> None:
    normalise = make_normaliser(clamp_min=0.0, clamp_max=3000.0)
    assert normalise is not None
    assert normalise(3500) == 3000 and type(normalise(3500)) is int
    assert normalise(-7) == 0 and type(normalise(-7)) is int
    assert normalise(2**63 - 1) == 3000
    assert normalise(12.5) == 12.5
    half = make_normaliser(clamp_max=2.5)
    assert half is not None and half(7) == 2.5  # a bound that is no whole number


def test_an_unscaled_64_bit_integer_stays_exact() -> None:
    normalise = make_normaliser(clamp_min=0, nan_value=-1)
    assert normalise is not None
    assert normalise(2**64 - 1) == 2**64 - 1 and type(normalise(2**64 - 1)) is int
    assert normalise(-1) is None and normalise(-2) == 0


def test_one_sided_clamps_and_the_whole_chain_from_a_tag() -> None:
    tag = TagConfig(name="level", nan_value=-1, scale=0.5, offset=1, clamp_max=50)
    assert tag.normalising == ["nan_value", "scale", "offset", "clamp_max"]
    normalise = normaliser_of(tag)
    assert normalise is not None
    assert [normalise(v) for v in (-1, -10, 10, 200)] == [None, -4.0, 6.0, 50.0]


def test_a_clamp_upside_down_is_a_config_problem() -> None:
    with pytest.raises(ValueError, match="(?s)clamp_max.*must not be less than clamp_min"):
        TagConfig(name="t", clamp_min=10, clamp_max=5)
