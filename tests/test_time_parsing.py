"""Times given as text, by the API's `start`/`end` and by `collector rebuild --start/--end`:
one parser in the core (`collector.model.parse_instant`) and one way of saying what is wrong,
after each caller's name for what was given; never a traceback, also for times beyond the
years 1 to 9999."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.params import BadParameter, parse_time
from collector.cli import main
from collector.derive.rebuild import RebuildError, parse_when
from collector.model import NotAnInstant, parse_instant


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-22T08:00:00Z", 1_795_334_400_000_000),
    ("2026-11-22T09:00:00+01:00", 1_795_334_400_000_000),
    (" 2026-11-22T08:00:00.123456Z ", 1_795_334_400_123_456),
    ("1795334400000", 1_795_334_400_000_000),
    ("-1", -1000),
    ("0001-01-01T00:00:00Z", -62_135_596_800_000_000),
    ("9999-12-31T23:59:59.999999Z", 253_402_300_799_999_999),
])
def test_instants(text: str, expected: int) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("yesterday", "not a time"),
    ("", "not a time"),
    ("12345678901234567", "not a time"),  # more digits than epoch milliseconds of year 9999
    ("2026-11-22T08:00:00", "no time zone"),
    ("0001-01-01T00:00:00+01:00", "out of range"),  # before the year 1 in UTC
    ("9999-12-31T23:59:59-01:00", "out of range"),
    ("9999999999999999", "out of range"),
    ("-9999999999999999", "out of range"),
])
def test_not_instants(text: str, problem: str) -> None:
    with pytest.raises(NotAnInstant) as caught:
        parse_instant(text)
    assert caught.value.problem == problem


def test_each_caller_names_what_was_given() -> None:
    with pytest.raises(BadParameter, match=r"^start='0001-01-01T00:00:00\+01:00' is outside the years 1 to 9999$"):
        parse_time("start", "0001-01-01T00:00:00+01:00")
    with pytest.raises(BadParameter, match=r"^end='08:00' is not a time: give RFC 3339"):
        parse_time("end", "08:00")
    with pytest.raises(RebuildError, match=r"^--start '0001-01-01T00:00:00\+01:00' is outside the years 1 to 9999$"):
        parse_when("start", "0001-01-01T00:00:00+01:00")
    with pytest.raises(RebuildError, match=r"^--end '2026-11-22T08:00:00' has no time zone: add Z"):
        parse_when("end", "2026-11-22T08:00:00")


def test_rebuild_with_a_time_out_of_range_is_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(f"ledger:\n  url: sqlite:///{tmp_path}/ledger.db\n"
                      "machines:\n  - id: press07\n")
    code = main(["rebuild", "-c", str(config), "--machine", "press07",
                 "--start", "0001-01-01T00:00:00+01:00"])
    err = capsys.readouterr().err
    assert code != 0
    assert err == ("collector: --start '0001-01-01T00:00:00+01:00' is outside the years 1 to "
                   "9999\n")
