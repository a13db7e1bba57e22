"""`/api/v1/readings` on SQLite and PostgreSQL: ranges, several tags, keyset paging that stays
right while readings arrive, CSV parsed back, and a clear 400 or 404 for every bad parameter."""

from __future__ import annotations

import csv
import io
import math

import httpx

from collector.model import BAD, Reading, format_ts, now_us
from tests.kit.api import T0, S, detail, ms

URL = "/api/v1/readings"


def current(n: int, start: int = T0, step: int = S, tag: str = "motor_current") -> list[Reading]:
    return [Reading("press07", tag, start + i * step, float(i)) for i in range(n)]


async def get_all(client: httpx.AsyncClient, params: dict[str, object]) -> list[dict[str, object]]:
    """Every item of a query, following `next` until it is null."""
    items: list[dict[str, object]] = []
    cursor = None
    for _ in range(10_000):
        page = (await client.get(URL, params={**params, **({"cursor": cursor} if cursor else {})}))
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


async def test_default_range_is_the_last_hour(api_env) -> None:
    rt, client = api_env
    now = now_us()
    await rt.ledger.write([Reading("press07", "motor_current", now - 2 * 3600 * S, 1.0),
                           Reading("press07", "motor_current", now - 1800 * S, 2.0),
                           Reading("press07", "motor_current", now - 10 * S, 3.0)])
    body = (await client.get(URL, params={"machine": "press07", "tag": "motor_current"})).json()
    assert [i["value"] for i in body["items"]] == [2.0, 3.0] and body["next"] is None
    # end given, start = end - 1h
    body = (await client.get(URL, params={"machine": "press07", "end": ms(now - 1700 * S)})).json()
    assert [i["value"] for i in body["items"]] == [2.0]


async def test_time_formats_agree(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write(current(100))
    expected = [float(i) for i in range(10, 20)]  # [T0+10s, T0+20s)
    for start, end in [
        (ms(T0 + 10 * S), ms(T0 + 20 * S)),
        ("2023-11-14T22:13:30Z", "2023-11-14T22:13:40Z"),
        ("2023-11-14T22:13:30.000Z", "2023-11-14T22:13:40.000+00:00"),
        ("2023-11-14T23:13:30+01:00", "2023-11-14T17:13:40-05:00"),
    ]:
        body = (await client.get(URL, params={"machine": "press07", "start": start,
                                              "end": end})).json()
        assert [i["value"] for i in body["items"]] == expected, (start, end)


async def test_items_several_tags_oldest_first(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write(current(3) + [
        Reading("press07", "door_open", T0 + S, True),
        Reading("press07", "mode", T0 + S, "AUTO"),
        Reading("press07", "mode", T0 + 2 * S + 5_000, None, BAD)])
    params = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 10 * S)}
    items = (await client.get(URL, params={**params, "tag": ["mode", "door_open"]})).json()["items"]
    assert items == [
        {"machine": "press07", "tag": "door_open", "ts": "2023-11-14T22:13:21.000Z",
         "value": True, "quality": "good"},
        {"machine": "press07", "tag": "mode", "ts": "2023-11-14T22:13:21.000Z", "value": "AUTO",
         "quality": "good"},
        {"machine": "press07", "tag": "mode", "ts": "2023-11-14T22:13:22.005Z", "value": None,
         "quality": "bad"},
    ]
    # a comma-separated list is the same as repeating the parameter
    same = (await client.get(URL, params={**params, "tag": "mode,door_open"})).json()["items"]
    assert same == items
    # no tag: every tag of the machine
    every = (await client.get(URL, params=params)).json()["items"]
    assert len(every) == 6 and [i["ts"] for i in every] == sorted(i["ts"] for i in every)
    # numbers, a text and a missing value on one page (no bool tag among them)
    mixed = (await client.get(URL, params={**params, "tag": ["motor_current", "mode"]})).json()
    assert mixed["items"] == [i for i in every if i["tag"] in ("motor_current", "mode")]
    assert {type(i["value"]) for i in mixed["items"]} == {float, str, type(None)}


async def test_paging_covers_everything_once(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write(current(250) + current(250, start=T0 + S // 2, tag="door_open"))
    params = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 1000 * S), "limit": 37}
    items = await get_all(client, params)
    assert len(items) == 500
    keys = [(i["ts"], i["tag"]) for i in items]
    assert keys == sorted(keys) and len(set(keys)) == 500
    first = (await client.get(URL, params={**params, "limit": 100_000})).json()
    assert first["items"] == items and first["next"] is None


async def test_large_pages_equal_small_ones(api_env) -> None:
    """Pages made in several chunks (more rows than CHUNK_ROWS), of one series and of several,
    hold the same items as many small pages."""
    rt, client = api_env
    await rt.ledger.write(current(4_500, step=S // 4) + [
        Reading("press07", "door_open", T0 + i * S, i % 3 == 0) for i in range(1_200)])
    for tag in (["motor_current"], ["motor_current", "door_open"]):
        params = {"machine": "press07", "tag": tag, "start": ms(T0), "end": ms(T0 + 2_000 * S)}
        small = await get_all(client, {**params, "limit": 700})
        large = await get_all(client, {**params, "limit": 5_000})
        assert large == small and len(small) == 4_500 + 1_200 * (len(tag) - 1)
        assert [i["value"] for i in large if i["tag"] == "motor_current"] == [
            float(i) for i in range(4_500)]
        assert {i["value"] for i in large if i["tag"] == "door_open"} <= {True, False}


async def test_paging_stays_right_while_readings_arrive(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write(current(100, step=2 * S))  # even seconds
    params = {"machine": "press07", "tag": "motor_current", "start": ms(T0),
              "end": ms(T0 + 1000 * S), "limit": 30}
    page1 = (await client.get(URL, params=params)).json()
    # readings arrive: some before the cursor (already paged past), some after it
    await rt.ledger.write([Reading("press07", "motor_current", T0 + (2 * i + 1) * S, 1000.0 + i)
                           for i in range(100)])
    items = list(page1["items"])
    cursor = page1["next"]
    while cursor:
        body = (await client.get(URL, params={**params, "cursor": cursor})).json()
        items += body["items"]
        cursor = body["next"]
    ts = [i["ts"] for i in items]
    assert len(ts) == len(set(ts))  # nothing twice
    last_of_page1 = page1["items"][-1]["ts"]
    # every original reading once, and every new reading after the cursor, none before it
    expected = {format_ts(T0 + 2 * i * S) for i in range(100)}
    expected |= {format_ts(T0 + (2 * i + 1) * S) for i in range(100)
                 if format_ts(T0 + (2 * i + 1) * S) > last_of_page1}
    assert set(ts) == expected


async def test_csv_is_the_json_as_text(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write(current(50) + [Reading("press07", "door_open", T0 + 3 * S, True),
                                         Reading("press07", "mode", T0 + 4 * S, 'say "hi", ok'),
                                         Reading("press07", "mode", T0 + 5 * S, None, BAD)])
    params = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 60 * S)}
    items = (await client.get(URL, params=params)).json()["items"]
    r = await client.get(URL, params={**params, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "x-next-cursor" not in r.headers
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == len(items) == 53
    for row, item in zip(rows, items, strict=True):
        value = item["value"]
        shown = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        assert row == {**{k: str(v) for k, v in item.items()}, "value": shown, "status": "",
                       "status_code": ""}
    # paging works in CSV too, through the X-Next-Cursor header
    collected: list[dict[str, str]] = []
    cursor = None
    while True:
        r = await client.get(URL, params={**params, "format": "csv", "limit": 20,
                                          **({"cursor": cursor} if cursor else {})})
        collected += list(csv.DictReader(io.StringIO(r.text)))
        cursor = r.headers.get("x-next-cursor")
        if not cursor:
            break
    assert collected == rows
    # an empty range still has the header row
    r = await client.get(URL, params={"machine": "press07", "start": ms(T0 - 10 * S),
                                      "end": ms(T0), "format": "csv"})
    assert r.text.strip() == "machine,tag,ts,value,quality,status,status_code"


async def test_non_finite_floats_are_null(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write([Reading("press07", "motor_current", T0, math.inf),
                           Reading("press07", "motor_current", T0 + S, -math.inf)])
    r = await client.get(URL, params={"machine": "press07", "start": ms(T0), "end": ms(T0 + 9 * S)})
    assert r.status_code == 200 and all(i["value"] is None for i in r.json()["items"])
    r = await client.get("/api/v1/machines/press07/latest")
    assert r.status_code == 200 and r.json()["items"][0]["value"] is None


async def test_bad_parameters_say_what_is_wrong(api_env) -> None:
    rt, client = api_env
    await rt.ledger.write(current(5))
    base = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 60 * S)}
    page = (await client.get(URL, params={**base, "limit": 2})).json()
    cases = [
        ({**base, "limit": 0}, 400, "limit"),
        ({**base, "limit": 100_001}, 400, "100000"),
        ({**base, "limit": "many"}, 400, "limit"),
        ({**base, "start": "yesterday"}, 400, "start='yesterday' is not a time"),
        ({**base, "end": "2023-11-14T22:13:30"}, 400, "no time zone"),
        ({**base, "start": ms(T0 + 60 * S)}, 400, "earlier than end"),
        ({**base, "end": "99999999999999999"}, 400, "end"),
        ({**base, "cursor": "garbage!"}, 400, "cursor"),
        ({**base, "cursor": page["next"], "tag": "door_open"}, 400, "different query"),
        ({**base, "cursor": page["next"], "end": ms(T0 + 61 * S)}, 400, "different query"),
        ({**base, "format": "xml"}, 400, "format"),
        ({"start": ms(T0)}, 400, "machine"),
        ({**base, "machine": "press99"}, 404, "machine 'press99' not found"),
        ({**base, "tag": ["motor_current", "spindle_rpm"]}, 404,
         "tag 'spindle_rpm' not found on machine 'press07'"),
    ]
    for params, status, words in cases:
        r = await client.get(URL, params=params)
        assert r.status_code == status, (params, r.text)
        assert words in detail(r), (params, detail(r))
    ok = await client.get(URL, params={**base, "cursor": page["next"]})
    assert ok.status_code == 200 and len(ok.json()["items"]) == 3


async def test_cursor_of_default_range_needs_no_times(api_env) -> None:
    rt, client = api_env
    now = now_us()
    await rt.ledger.write(current(10, start=now - 100 * S))
    page = (await client.get(URL, params={"machine": "press07", "limit": 4})).json()
    values = [i["value"] for i in page["items"]]
    while page["next"]:
        page = (await client.get(URL, params={"machine": "press07", "limit": 4,
                                              "cursor": page["next"]})).json()
        values += [i["value"] for i in page["items"]]
    assert values == [float(i) for i in range(10)]
