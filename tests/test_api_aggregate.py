"""`/api/v1/readings/aggregate`: buckets checked against values computed here, local-time day
buckets across DST, CSV parsed back, bad buckets refused, and SQLite and PostgreSQL side by side."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from collector.ledger import Ledger
from collector.model import BAD, Reading, format_ts, us_from_datetime
from tests.kit.api import T0, S, detail, make_env, ms
from tests.kit.postgres import PG_URL

URL = "/api/v1/readings/aggregate"
MIN = 60 * S


def noisy(seed: int, n: int, start: int = T0, tag: str = "motor_current") -> list[Reading]:
    """Irregular readings with some bad ones (no value)."""
    rng = random.Random(seed)
    out, ts = [], start
    for _ in range(n):
        ts += rng.randrange(200_000, 20 * S)
        if rng.random() < 0.05:
            out.append(Reading("press07", tag, ts, None, BAD))
        else:
            out.append(Reading("press07", tag, ts, round(rng.uniform(-50, 150), 3)))
    return out


def expected(readings: list[Reading], bucket: int, start: int, end: int) -> list[dict[str, object]]:
    groups: dict[int, list[Reading]] = {}
    for r in readings:
        if start <= r.ts < end:
            groups.setdefault(r.ts // bucket * bucket, []).append(r)
    out = []
    for b in sorted(groups):
        rows = groups[b]
        nums = [r.value for r in rows if isinstance(r.value, int | float)]
        out.append({"machine": "press07", "tag": rows[0].tag, "start": format_ts(b),
                    "count": len(rows), "min": min(nums) if nums else None,
                    "max": max(nums) if nums else None,
                    "avg": sum(nums) / len(nums) if nums else None,
                    "last": max(rows, key=lambda r: r.ts).value})
    return out


def assert_same(got: list[dict[str, object]], want: list[dict[str, object]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert {k: v for k, v in g.items() if k != "avg"} == {k: v for k, v in w.items() if k != "avg"}
        assert (g["avg"] is None) == (w["avg"] is None)
        if w["avg"] is not None:
            assert g["avg"] == pytest.approx(w["avg"], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("bucket,size", [("1m", MIN), ("5m", 5 * MIN), ("1h", 60 * MIN),
                                         ("90s", 90 * S), ("1s", S)])
async def test_buckets_match_values_computed_here(api_env, bucket: str, size: int) -> None:
    rt, client = api_env
    data = noisy(7, 1500)
    await rt.ledger.write(data)
    start, end = T0 + 137 * S, data[-1].ts - 600 * S  # not aligned to any bucket
    r = await client.get(URL, params={"machine": "press07", "tag": "motor_current",
                                      "start": ms(start), "end": ms(end), "bucket": bucket})
    assert r.status_code == 200, r.text
    assert_same(r.json()["items"], expected(data, size, start, end))


async def test_several_tags_text_and_bool(api_env) -> None:
    rt, client = api_env
    current, door = noisy(1, 300), noisy(2, 300, tag="door_open")
    door = [r._replace(value=None if r.value is None else r.value > 50) for r in door]
    mode = [Reading("press07", "mode", T0 + i * 30 * S, f"step{i}") for i in range(100)]
    await rt.ledger.write(current + door + mode)
    params = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 3600 * S), "bucket": "10m",
              "tag": ["mode", "motor_current", "door_open"]}
    items = (await client.get(URL, params=params)).json()["items"]
    # oldest bucket first; within a bucket the tags in the order asked
    assert [(i["start"], i["tag"]) for i in items[:3]] == [
        (format_ts(T0 // (10 * MIN) * 10 * MIN), t) for t in ("mode", "motor_current", "door_open")]
    by_tag: dict[str, list[dict[str, object]]] = {}
    for i in items:
        by_tag.setdefault(str(i["tag"]), []).append(i)
    assert_same(by_tag["motor_current"], expected(current, 10 * MIN, T0, T0 + 3600 * S))
    want_mode = expected(mode, 10 * MIN, T0, T0 + 3600 * S)
    for w in want_mode:
        w.update(min=None, max=None, avg=None)
    assert_same(by_tag["mode"], want_mode)
    numeric_door = [r._replace(value=None if r.value is None else float(r.value)) for r in door]
    want_door = expected(numeric_door, 10 * MIN, T0, T0 + 3600 * S)
    for w, raw in zip(want_door, expected(door, 10 * MIN, T0, T0 + 3600 * S), strict=True):
        w["last"] = raw["last"]  # last keeps the tag's kind: true/false
    assert_same(by_tag["door_open"], want_door)


def local_days(readings: list[Reading], tz: ZoneInfo) -> list[tuple[str, int, object]]:
    groups: dict[object, list[Reading]] = {}
    for r in readings:
        day = datetime.fromtimestamp(r.ts / S, tz).date()
        groups.setdefault(day, []).append(r)
    return [(format_ts(us_from_datetime(datetime.combine(day, time(0), tzinfo=tz))),
             len(rows), rows[-1].value) for day, rows in sorted(groups.items())]


@pytest.mark.parametrize("zone,first_day", [("Europe/Berlin", "2023-10-27"),
                                            ("Europe/Berlin", "2023-03-24"),
                                            ("America/Chicago", "2023-11-03"),
                                            ("Asia/Kolkata", "2023-10-27")])
async def test_day_buckets_in_local_time_across_dst(api_env, zone: str, first_day: str) -> None:
    rt, client = api_env
    tz = ZoneInfo(zone)
    begin = us_from_datetime(datetime.fromisoformat(first_day).replace(tzinfo=tz))
    data = [Reading("press07", "motor_current", begin + i * 600 * S, float(i)) for i in range(5 * 144)]
    await rt.ledger.write(data)
    r = await client.get(URL, params={"machine": "press07", "bucket": "1d", "tz": zone,
                                      "start": ms(begin), "end": ms(data[-1].ts) + 1})
    assert r.status_code == 200, r.text
    got = [(i["start"], i["count"], i["last"]) for i in r.json()["items"]]
    assert got == local_days(data, tz)
    counts = sorted({c for _, c, _ in got[:-1]})  # the last day is cut short by the data
    if zone != "Asia/Kolkata":  # a 23 h or 25 h day holds 138 or 150 ten-minute readings
        assert counts in ([138, 144], [144, 150]), counts


async def test_hour_buckets_through_the_repeated_hour(api_env) -> None:
    rt, client = api_env
    tz = ZoneInfo("Europe/Berlin")  # 2023-10-29 03:00 CEST -> 02:00 CET
    begin = us_from_datetime(datetime(2023, 10, 28, 22, 0, tzinfo=UTC))
    data = [Reading("press07", "motor_current", begin + i * 60 * S, float(i)) for i in range(6 * 60)]
    await rt.ledger.write(data)
    r = await client.get(URL, params={"machine": "press07", "bucket": "1h", "tz": "Europe/Berlin",
                                      "start": ms(begin), "end": ms(begin + 6 * 3600 * S)})
    items = r.json()["items"]
    assert [i["count"] for i in items] == [60] * 6
    assert [i["start"] for i in items] == [format_ts(begin + h * 3600 * S) for h in range(6)]
    assert datetime.fromtimestamp(begin / S, tz).hour == 0


async def test_half_hour_zone_aligns_hours(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write([Reading("press07", "motor_current", T0 + i * 60 * S, 1.0)
                           for i in range(240)])
    items = (await client.get(URL, params={"machine": "press07", "bucket": "1h",
                                           "tz": "Asia/Kolkata", "start": ms(T0),
                                           "end": ms(T0 + 4 * 3600 * S)})).json()["items"]
    assert all(i["start"].endswith(":30:00.000Z") for i in items)  # local full hours at +05:30
    assert sum(i["count"] for i in items) == 240


async def test_csv_matches_json(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write(noisy(3, 500) + noisy(4, 200, tag="door_open"))
    params = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 7200 * S), "bucket": "5m"}
    items = (await client.get(URL, params=params)).json()["items"]
    r = await client.get(URL, params={**params, "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(items) > 20
    for row, item in zip(rows, items, strict=True):
        assert row["machine"] == item["machine"] and row["tag"] == item["tag"]
        assert row["start"] == item["start"] and int(row["count"]) == item["count"]
        for key in ("min", "max", "avg", "last"):
            assert (None if row[key] == "" else float(row[key])) == item[key]


async def test_bad_buckets_and_zones(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write(noisy(5, 10))
    base = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 3600 * S)}
    cases = [
        ({**base, "bucket": "0s"}, 400, "1s to 1d"), ({**base, "bucket": "2d"}, 400, "1s to 1d"),
        ({**base, "bucket": "500ms"}, 400, "1s to 1d"), ({**base, "bucket": "abc"}, 400, "bucket"),
        ({**base, "bucket": "60000"}, 400, "unit"), ({**base, "tz": "Mars/Olympus"}, 400, "tz"),
        ({**base, "tz": "../../etc/passwd"}, 400, "time zone"),
        ({**base, "bucket": "1s", "start": ms(T0 - 30 * 86400 * S)}, 400, "buckets per tag"),
        ({**base, "tag": "nope"}, 404, "tag 'nope' not found"),
        ({**base, "machine": "nope"}, 404, "machine 'nope' not found"),
    ]
    for params, status, words in cases:
        r = await client.get(URL, params=params)
        assert r.status_code == status and words in detail(r), (params, r.text)
    for bucket in ("1000ms", "60s", "1m", " 15m ", "1d"):
        r = await client.get(URL, params={**base, "bucket": bucket})
        assert r.status_code == 200, (bucket, r.text)


async def test_sqlite_and_postgresql_give_the_same_answers(tmp_path, pg_schema: str) -> None:
    lite, pg = Ledger(f"sqlite:///{tmp_path}/side.db"), Ledger(PG_URL, schema=pg_schema)
    try:
        answers = []
        for ledger in (lite, pg):
            await ledger.open()
            _, client = await make_env(ledger)
            data = noisy(11, 3000) + noisy(12, 3000, tag="door_open")
            await ledger.write(data)
            async with client:
                answers.append([
                    (await client.get(URL, params={"machine": "press07", "bucket": b,
                                                   "start": ms(T0), "end": ms(T0 + 86400 * S),
                                                   **extra})).json()["items"]
                    for b, extra in (("1m", {}), ("1h", {}), ("1d", {"tz": "Europe/Berlin"}))]
                    + [(await client.get("/api/v1/readings", params={
                        "machine": "press07", "start": ms(T0), "end": ms(T0 + 86400 * S),
                        "limit": 100_000})).json()["items"]])
        for a, b in zip(*answers, strict=True):
            assert len(a) == len(b) > 0
            for x, y in zip(a, b, strict=True):
                if "avg" in x and x["avg"] is not None:
                    assert x["avg"] == pytest.approx(y["avg"], rel=1e-12)
                    x, y = {**x, "avg": 0}, {**y, "avg": 0}
                assert x == y
    finally:
        await lite.close()
        await pg.close()



async def test_edges_of_time_are_answered(api_env) -> None:
    rt, client = api_env
    last_ms, first_ms = 253_402_300_799_999, -62_135_596_800_000  # 9999-12-31 and 0001-01-01
    await rt.ledger.write([Reading("press07", "motor_current", last_ms * 1000 - 5 * S, 1.0),
                           Reading("press07", "motor_current", 1000 * S, 2.0)])
    ten_days = 10 * 86_400_000
    for zone in ("Asia/Tokyo", "America/Chicago", "UTC"):
        for start, end in ((last_ms - ten_days, last_ms), (first_ms, first_ms + ten_days),
                           (first_ms, last_ms)):
            for path in (URL, "/api/v1/readings"):
                r = await client.get(path, params={"machine": "press07", "start": start,
                                                   "end": end, "bucket": "1d", "tz": zone})
                assert r.status_code in (200, 400), (zone, start, end, r.text)
    r = await client.get(URL, params={"machine": "press07", "start": last_ms - ten_days,
                                      "end": last_ms, "bucket": "1d", "tz": "Asia/Tokyo"})
    assert [(i["count"], i["last"]) for i in r.json()["items"]] == [(1, 1.0)]


async def test_infinite_values_and_empty_statistics_are_null(api_env) -> None:
    """A bucket holding an infinite value, or no number at all, still gives valid JSON: the
    statistics JSON cannot express are null, the others stay numbers."""
    rt, client = api_env
    await rt.ledger.write([
        Reading("press07", "motor_current", T0 + 1 * S, 2.5),
        Reading("press07", "motor_current", T0 + 2 * S, float("inf")),
        Reading("press07", "motor_current", T0 + 61 * S, -1.25),
        Reading("press07", "motor_current", T0 + 62 * S, 0.1),
        Reading("press07", "motor_current", T0 + 121 * S, None, BAD),
    ])
    params = {"machine": "press07", "tag": "motor_current", "bucket": "1m",
              "start": ms(T0), "end": ms(T0 + 180 * S)}
    r = await client.get(URL, params=params)
    assert r.status_code == 200, r.text
    got = [(i["count"], i["min"], i["max"], i["avg"], i["last"]) for i in r.json()["items"]]
    first_min = T0 // MIN * MIN
    assert [i["start"] for i in r.json()["items"]] == [
        format_ts(first_min + k * MIN) for k in range(len(got))]
    assert got == [(2, 2.5, None, None, None), (2, -1.25, 0.1, pytest.approx(-0.575), 0.1),
                   (1, None, None, None, None)]
