"""The fast text of large answers: each value, timestamp and page item as `value_json`,
`ts_text` and the pydantic models would show them, for any input."""

from __future__ import annotations

import gc
import json
import math
import random

from hypothesis import given
from hypothesis import strategies as st

from api import output
from api.output import bucket_items, reading_items, ts_texts, value_texts
from api.params import ts_text
from collector.ledger.aggregates import BucketStats
from collector.ledger.pages import PageColumns, in_page_order
from collector.ledger.small_reads import gc_paused

FIRST_YEAR = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z in µs
LAST_YEAR = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

values_st = st.one_of(st.floats(), st.none(), st.text(),
                      st.sampled_from(["a,b", '","', "ü,€", "\ud800", ",", "[1,2]"]))


def shown(value: object, is_bool: bool = False) -> object:
    """What a client should parse out of the JSON of a stored value."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if is_bool:
            return value != 0.0
    return value


@given(st.lists(values_st, max_size=50))
def test_value_texts_parse_back_to_the_values(values: list[object]) -> None:
    texts = value_texts(values)
    assert len(texts) == len(values)
    for text, value in zip(texts, values, strict=True):
        assert json.loads(text) == shown(value)  # a lone surrogate too: escaped, not refused


@given(st.lists(st.tuples(values_st, st.booleans()), max_size=50))
def test_bool_series_show_false_and_true(rows: list[tuple[object, bool]]) -> None:
    values = [v for v, _ in rows]
    texts = value_texts(values, (b for _, b in rows))
    assert [json.loads(t) for t in texts] == [shown(v, b) for v, b in rows]


def test_floats_in_shortest_form() -> None:
    assert value_texts([0.1, 21.3, 1e16, -0.0, 5.0, None]) == [
        b"0.1", b"21.3", b"1e+16", b"-0.0", b"5.0", b"null"]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_read_back_exactly(value: float) -> None:
    (text,) = value_texts([value])
    assert float(text) == value and math.copysign(1, float(text)) == math.copysign(1, value)


@given(st.lists(st.integers(min_value=FIRST_YEAR, max_value=LAST_YEAR), max_size=50))
def test_timestamps_as_ts_text(tss: list[int]) -> None:
    assert [t.decode() for t in ts_texts(tss)] == [ts_text(t) for t in tss]


def test_minute_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(output, "_MINUTES_KEPT", 10)
    minutes = [i * 60_000_000 for i in range(40)]
    for i in range(0, 40, 5):
        assert [t.decode() for t in ts_texts(minutes[i:i + 5])] == [
            ts_text(t) for t in minutes[i:i + 5]]
    assert len(output._MINUTES) <= 15


def expected_item(machine: str, tag: str, ts: int, value: object, quality: int,
                  is_bool: bool) -> dict[str, object]:
    return {"machine": machine, "tag": tag, "ts": ts_text(ts),
            "value": shown(value, is_bool), "quality": ("good", "uncertain", "bad")[quality]}


@given(st.lists(st.tuples(st.sampled_from([3, 7, 9]), st.integers(0, 10**15), values_st,
                          st.integers(0, 2)), max_size=60),
       st.booleans())
def test_page_items_are_the_rows(rows: list[tuple[int, int, object, int]], single: bool) -> None:
    names = {3: 'he said "x"', 7: "mode", 9: "door_open"}
    heads = {sid: ('{"machine":"press,07","tag":' + json.dumps(tag) + ',"ts":"').encode()
             for sid, tag in names.items()}
    bools = {9}
    if single:
        rows = [(9, *r[1:]) for r in rows]
        page = PageColumns(9, None, [r[1] for r in rows], [r[2] for r in rows],
                           [r[3] for r in rows])
    else:
        page = PageColumns(None, [r[0] for r in rows], [r[1] for r in rows],
                           [r[2] for r in rows], [r[3] for r in rows])
    text = b"[" + b"".join(reading_items(page, heads, bools)) + b"]"
    assert json.loads(text) == [expected_item("press,07", names[sid], ts, v, q, sid in bools)
                                for sid, ts, v, q in rows]


def test_page_order_is_restored_when_rows_come_out_of_order() -> None:
    rng = random.Random(5)
    keys = sorted({(rng.randrange(100), rng.randrange(1, 4)) for _ in range(300)})
    shuffled = keys[:]
    rng.shuffle(shuffled)
    ts, sids, values, qualities, statuses = in_page_order(
        [k[0] for k in shuffled], [k[1] for k in shuffled],
        [float(k[0] * 10 + k[1]) for k in shuffled], [k[1] % 3 for k in shuffled],
        [k[0] if k[1] == 2 else None for k in shuffled])
    assert list(zip(ts, sids, strict=True)) == keys
    assert values == [float(t * 10 + s) for t, s in keys]
    assert qualities == [s % 3 for _, s in keys]
    assert statuses == [t if s == 2 else None for t, s in keys]
    in_order = ([1, 1, 2], [1, 2, 1], [0.5, None, "x"], [0, 1, 2], [None, 2156724224, None])
    assert in_page_order(*in_order) == in_order  # type: ignore[arg-type]


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause leaves the outer one alone
    assert gc.isenabled()
    try:
        with gc_paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # whoever turned it off keeps it off
    finally:
        gc.enable()


@given(st.lists(st.tuples(st.sampled_from([3, 7]), st.integers(0, 10**15),
                          st.integers(0, 10**6), st.one_of(st.floats(), st.none()),
                          st.one_of(st.floats(), st.none()),
                          st.one_of(st.floats(), st.none()),
                          st.one_of(values_st, st.booleans(), st.integers(-2**70, 2**70))),
                max_size=40))
def test_bucket_items_are_the_buckets(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    heads = {3: b'{"machine":"m","tag":"a,b","start":"', 7: b'{"machine":"m","tag":"c","start":"'}
    tags = {3: "a,b", 7: "c"}
    buckets = [BucketStats(sid, start, n, n, lo, hi, avg, last, start)
               for sid, start, n, lo, hi, avg, last in rows]
    text = b"[" + b"".join(bucket_items(buckets, heads)) + b"]"
    assert json.loads(text) == [
        {"machine": "m", "tag": tags[sid], "start": ts_text(start), "count": n,
         "min": shown(lo), "max": shown(hi), "avg": shown(avg), "last": shown(last)}
        for sid, start, n, lo, hi, avg, last in rows]


def test_tag_heads_follow_a_changed_series() -> None:
    from api.tags import _head
    from collector.ledger import Series

    first = Series(41, "press07", "temp", "°C", "io", "modbus", "number")
    assert json.loads(_head(first, "oil") + b"null}")["unit"] == "°C"
    assert _head(first, "oil") is _head(first, "oil")  # kept while the series is the same
    changed = Series(41, "press07", "temp", "K", "io", "modbus", "number")
    assert json.loads(_head(changed, "oil") + b"null}")["unit"] == "K"
    assert json.loads(_head(changed, None) + b"null}")["description"] is None
