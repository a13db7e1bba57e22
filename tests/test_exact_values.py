"""Numbers as the device sent them, end to end, on SQLite and PostgreSQL: 64-bit integers at
their edges (±2^53±1, ±(2^63−1), −2^63, 2^64−1) from a pymodbus server, an asyncua server and
the machine's Mosquitto, through the ledger, out of `/latest`, `/readings` (JSON, with
`int_as=string`, and CSV) and the aggregates; float32 values as their shortest decimal over
Modbus and OPC UA alike; an OPC UA StatusCode kept with its reading."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import math
import struct
import uuid
from typing import Any

import httpx
import pytest
import yaml
from asyncua import ua

from adapters.base import AdapterContext, registry
from collector.config import parse_config
from collector.ledger import Ledger
from collector.ledger.aggregates import exact_stats
from collector.model import BAD, GOOD, UNCERTAIN, Quality, Reading, SourceHealth
from tests.kit.api import T0, S, ms
from tests.kit.modbus import Device, memory_of, sim_device
from tests.kit.mqtt import Publisher
from tests.kit.opcua import OpcServer, nodes_of
from tests.kit.sinks import Sink
from tests.kit.waiting import wait_for

INT64 = {"i_p53_plus": 2**53 + 1, "i_p53_minus": 2**53 - 1, "i_m53_plus": -(2**53) + 1,
         "i_m53_minus": -(2**53) - 1, "i_max": 2**63 - 1, "i_min_plus": -(2**63) + 1,
         "i_min": -(2**63), "i_m9007": -9007199254740993}
UINT64 = {"u_max": 2**64 - 1, "u_p63": 2**63, "u_p53_plus": 2**53 + 1,
          "u_telegraf": 723685415333069058}
EDGES = {**INT64, **UINT64}
SENSOR_FAILURE = ua.StatusCodes.BadSensorFailure  # 0x808C0000
LAST_USABLE = ua.StatusCodes.UncertainLastUsableValue
# float32 as sent, and the decimal served: the shortest that reads back as the same float32
FLOAT32 = {"f_tenth": (0.1, "0.1"), "f_volts": (229.7, "229.7"), "f_tiny": (1e-38, "1e-38"),
           "f_neg": (-229.7, "-229.7"), "f_big": (3.4028234663852886e38, "3.4028235e+38")}
NOT_FINITE = {"f_nan": math.nan, "f_inf": math.inf, "f_minus_inf": -math.inf}


# --- the sources, each against its real peer ---------------------------------------------------

async def run_source(source: dict[str, Any], until: set[str]) -> dict[str, Reading]:
    """Run one source of machine press07 until it gave a reading of every tag in `until`;
    the newest reading of each tag."""
    config = parse_config(yaml.safe_dump({
        "api": {"enabled": False},
        "machines": [{"id": "press07", "sources": [source]}]}))
    machine = config.machines[0]
    sink = Sink()
    health = SourceHealth("press07", source["id"], source["protocol"])
    adapter = registry()[source["protocol"]].factory(
        AdapterContext(machine, machine.sources[0], sink, health))
    task = asyncio.create_task(adapter.run())
    try:
        await wait_for(lambda: until <= set(sink.latest()), 20,
                       what=f"readings of {sorted(until - set(sink.latest()))}")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return sink.latest()


async def modbus_readings() -> dict[str, Reading]:
    registers = [{"address": 4 * i, "type": "int64", "value": v}
                 for i, v in enumerate(INT64.values())]
    registers += [{"address": 100 + 4 * i, "type": "uint64", "value": v}
                  for i, v in enumerate(UINT64.values())]
    floats = {**{k: v for k, (v, _) in FLOAT32.items()}, **NOT_FINITE}
    registers += [{"address": 200 + 2 * i, "type": "float32", "value": v}
                  for i, v in enumerate(floats.values())]
    tags = [{"name": n, "address": 4 * i, "type": "int64"} for i, n in enumerate(INT64)]
    tags += [{"name": n, "address": 100 + 4 * i, "type": "uint64"} for i, n in enumerate(UINT64)]
    tags += [{"name": n, "address": 200 + 2 * i, "type": "float32"} for i, n in enumerate(floats)]
    device = Device([sim_device(1)])
    async with device:
        await device.load(memory_of({"holding": registers}))
        return await run_source({"id": "io", "protocol": "modbus", "host": "127.0.0.1",
                                 "port": device.port, "interval": "100ms", "tags": tags},
                                {t["name"] for t in tags})


async def opcua_readings() -> dict[str, Reading]:
    variables = [{"name": n, "id": f"s=P.{n}", "type": "Int64", "value": v}
                 for n, v in INT64.items()]
    variables += [{"name": n, "id": f"s=P.{n}", "type": "UInt64", "value": v}
                  for n, v in UINT64.items()]
    variables += [{"name": n, "id": f"s=P.{n}", "type": "Float", "value": v}
                  for n, (v, _) in FLOAT32.items()]
    variables += [
        {"name": "broken", "id": "s=P.broken", "type": "Double", "value": 1.0,
         "status": "BadSensorFailure"},
        {"name": "stale", "id": "s=P.stale", "type": "Int64", "value": 2**63 - 1,
         "status": "UncertainLastUsableValue"}]
    server = OpcServer(nodes_of({"objects": [{"name": "P", "variables": variables}]}))
    await asyncio.to_thread(server.start)
    try:
        tags = [{"name": v["name"], "node": f"ns=2;{v['id']}"} for v in variables]
        return await run_source({"id": "hmi", "protocol": "opcua", "endpoint": server.url,
                                 "interval": "100ms", "tags": tags},
                                {t["name"] for t in tags})
    finally:
        await asyncio.to_thread(server.close)


async def mqtt_readings() -> dict[str, Reading]:
    prefix = f"exact/{uuid.uuid4().hex[:8]}"
    tags = [{"name": n, "topic": f"{prefix}/json", "json": n} for n in EDGES]
    tags += [{"name": "plain_max", "topic": f"{prefix}/plain"},
             {"name": "text_min", "topic": f"{prefix}/text", "json": "v"}]
    source = {"id": "sensors", "protocol": "mqtt", "broker": "mqtt://127.0.0.1:1883",
              "client_id": f"exact-{uuid.uuid4().hex[:10]}", "qos": 1, "tags": tags}
    config = parse_config(yaml.safe_dump({"api": {"enabled": False},
                                          "machines": [{"id": "press07", "sources": [source]}]}))
    machine = config.machines[0]
    sink = Sink()
    health = SourceHealth("press07", "sensors", "mqtt")
    task = asyncio.create_task(registry()["mqtt"].factory(
        AdapterContext(machine, machine.sources[0], sink, health)).run())
    try:
        await wait_for(lambda: health.connected, 20, what="connected to Mosquitto")
        with Publisher() as publisher:  # the payload as a device writes it: digits, not a double
            await asyncio.to_thread(publisher.publish, f"{prefix}/json", json.dumps(EDGES))
            await asyncio.to_thread(publisher.publish, f"{prefix}/plain", str(2**64 - 1))
            await asyncio.to_thread(publisher.publish, f"{prefix}/text",
                                    json.dumps({"v": str(-(2**63))}))
        names = {t["name"] for t in tags}
        await wait_for(lambda: names <= set(sink.latest()), 20, what="the messages")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return sink.latest()


# --- through the ledger and the API ----------------------------------------------------------

async def served(rt: Any, client: httpx.AsyncClient, readings: dict[str, Reading],
                 ) -> dict[str, Any]:
    """Store the readings at T0 (one tag each) and read them back every way the API gives
    them: {"latest", "readings", "strings", "csv", "aggregate"}, each by tag."""
    await rt.ledger.write([r._replace(ts=T0) for r in readings.values()])
    window = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 60 * S), "limit": 1000}
    latest = await client.get("/api/v1/machines/press07/latest")
    page = await client.get("/api/v1/readings", params=window)
    strings = await client.get("/api/v1/readings", params={**window, "int_as": "string"})
    text = await client.get("/api/v1/readings", params={**window, "format": "csv"})
    aggregate = await client.get("/api/v1/readings/aggregate",
                                 params={**window, "bucket": "1m"})
    tags = await client.get("/api/v1/tags", params={"machine": "press07"})
    tag_strings = await client.get("/api/v1/tags", params={"machine": "press07",
                                                           "int_as": "string"})
    for r in (latest, page, strings, text, aggregate, tags, tag_strings):
        assert r.status_code == 200, r.text
    return {
        "latest": {i["tag"]: i for i in latest.json()["items"]},
        "tags": {i["tag"]: i["latest"] for i in tags.json()["items"] if i["latest"]},
        "tag_strings": {i["tag"]: i["latest"] for i in tag_strings.json()["items"]
                        if i["latest"]},
        "readings": {i["tag"]: i for i in page.json()["items"]},
        "strings": {i["tag"]: i for i in strings.json()["items"]},
        "csv": {row["tag"]: row for row in csv.DictReader(io.StringIO(text.text))},
        "aggregate": {i["tag"]: i for i in aggregate.json()["items"]},
        "body": page.content,
    }


def assert_exact(out: dict[str, Any], expected: dict[str, int]) -> None:
    for tag, value in expected.items():
        assert out["latest"][tag]["value"] == value, tag
        assert out["tags"][tag]["value"] == value and out["tag_strings"][tag]["value"] == str(value)
        assert type(out["readings"][tag]["value"]) is int and out["readings"][tag]["value"] == value
        assert out["strings"][tag]["value"] == str(value), tag
        assert out["csv"][tag]["value"] == str(value), tag
        bucket = out["aggregate"][tag]
        assert (bucket["min"], bucket["max"], bucket["last"]) == (value, value, value), tag
        assert bucket["avg"] == float(value), tag  # a mean: the double nearest the value
        assert f'"value":{value},'.encode() in out["body"], tag  # the digits, as JSON


def assert_float32(out: dict[str, Any]) -> None:
    for tag, (_, text) in FLOAT32.items():
        assert f'"tag":"{tag}","ts":"2023-11-14T22:13:20.000Z","value":{text},'.encode() \
            in out["body"], tag
        assert out["csv"][tag]["value"] == repr(float(text)), tag
        assert out["latest"][tag]["value"] == float(text), tag


async def test_modbus_int64_uint64_and_float32_end_to_end(api_env) -> None:
    rt, client = api_env
    readings = await modbus_readings()
    assert {n: readings[n].value for n in EDGES} == EDGES
    for name in NOT_FINITE:  # not a number: a bad reading without a value
        assert (readings[name].value, readings[name].quality) == (None, BAD), name
    out = await served(rt, client, readings)
    assert_exact(out, EDGES)
    assert_float32(out)
    for name in NOT_FINITE:
        assert out["readings"][name]["value"] is None and out["csv"][name]["value"] == ""


async def test_opcua_int64_uint64_float_and_status_end_to_end(api_env) -> None:
    rt, client = api_env
    readings = await opcua_readings()
    assert {n: readings[n].value for n in EDGES} == EDGES
    broken, stale = readings["broken"], readings["stale"]
    assert (broken.value, broken.quality, broken.status) == (None, BAD, SENSOR_FAILURE)
    assert (stale.value, stale.quality, stale.status) == (2**63 - 1, UNCERTAIN, LAST_USABLE)
    out = await served(rt, client, readings)
    assert_exact(out, {**EDGES, "stale": 2**63 - 1})
    assert_float32(out)
    # the raw StatusCode and its name, on the readings and the latest values
    for answer in ("readings", "latest", "tags"):
        assert out[answer]["broken"]["status"] == "BadSensorFailure"
        assert out[answer]["broken"]["status_code"] == SENSOR_FAILURE
        assert out[answer]["stale"]["status"] == "UncertainLastUsableValue"
        assert out[answer]["stale"]["quality"] == "uncertain"
        assert "status" not in out[answer]["i_max"]  # good readings carry none
    assert (out["csv"]["broken"]["status"], out["csv"]["broken"]["status_code"]) == (
        "BadSensorFailure", str(SENSOR_FAILURE))
    assert out["csv"]["i_max"]["status"] == ""


async def test_mqtt_json_integers_end_to_end(api_env) -> None:
    rt, client = api_env
    readings = await mqtt_readings()
    assert {n: readings[n].value for n in EDGES} == EDGES
    assert readings["plain_max"].value == 2**64 - 1
    assert readings["text_min"].value == -(2**63)  # an integer in text, not via a double
    out = await served(rt, client, readings)
    assert_exact(out, {**EDGES, "plain_max": 2**64 - 1, "text_min": -(2**63)})


def test_modbus_and_opcua_give_the_same_float32() -> None:
    """One sensor, the same number over either protocol: the codec and OPC UA's Float."""
    from adapters.modbus.codec import decode_registers, encode_value
    from adapters.opcua.values import convert

    for raw, text in [*FLOAT32.values(), (1.0 / 3.0, "0.33333334"), (16777217.0, "16777216.0")]:
        f32 = struct.unpack(">f", struct.pack(">f", raw))[0]
        over_modbus = decode_registers(encode_value(raw, "float32"), "float32")
        over_opcua = convert(ua.Variant(f32, ua.VariantType.Float), None)
        assert over_modbus == over_opcua == float(text), raw
        assert repr(over_modbus) == repr(float(text))


# --- exact statistics in one bucket -----------------------------------------------------------

BUCKETED = {  # several edge values in one bucket, where doubles cannot tell them apart
    "near53": [2**53, 2**53 + 1, 2**53 - 1, 2**53 + 1],
    "near63": [2**63 - 1, 2**63, 2**63 + 1, 2**63 - 2],
    "wide": [2**64 - 1, 2**64 - 2, 2**64 - 1],
    "low": [-(2**63), -(2**63) + 1, -(2**53) - 1],
    "small": [5, -3, 7, 2],  # whole doubles from SQL, served as the integers they are
}


@pytest.mark.parametrize("bucket", ["1m", "30s", "1h"])
async def test_aggregates_of_integers_are_exact_and_never_wrap(api_env, bucket: str) -> None:
    """min, max and last exact; the mean from an exact sum (which overflows 64 bits here and
    neither wraps nor rounds before the one division); from rollups, raw readings and their
    parts at a range's edges alike."""
    rt, client = api_env
    await rt.ledger.write([Reading("press07", tag, T0 + 60 * S + i * 3 * S, v)
                           for tag, values in BUCKETED.items() for i, v in enumerate(values)])
    for start, end in ((T0, T0 + 3600 * S), (T0 + 60 * S, T0 + 120 * S),
                       (T0 + 61 * S, T0 + 119 * S)):
        r = await client.get("/api/v1/readings/aggregate", params={
            "machine": "press07", "tag": list(BUCKETED), "start": ms(start), "end": ms(end),
            "bucket": bucket})
        assert r.status_code == 200, r.text
        items = {i["tag"]: i for i in r.json()["items"]}
        for tag, values in BUCKETED.items():
            kept = [v for i, v in enumerate(values) if start <= T0 + 60 * S + i * 3 * S < end]
            item = items[tag]
            assert (item["count"], item["min"], item["max"], item["last"]) == (
                len(kept), min(kept), max(kept), kept[-1]), (tag, start, end)
            assert type(item["min"]) is int and type(item["max"]) is int, (tag, start, end)
            assert item["avg"] == sum(kept) / len(kept), (tag, start, end)
        strings = (await client.get("/api/v1/readings/aggregate", params={
            "machine": "press07", "tag": "wide", "start": ms(start), "end": ms(end),
            "bucket": bucket, "int_as": "string"})).json()["items"]
        assert strings[0]["max"] == str(2**64 - 1) and strings[0]["count"] == items["wide"]["count"]


def test_exact_stats_compare_integers_and_doubles_exactly() -> None:
    rows = [(1, float(2**53), None, 2**53 + 1), (2, 9007199254740992.0, None, None),
            (3, None, None, None), (4, float(2**64), None, b"18446744073709551615")]
    stats = exact_stats(7, 0, "number", rows)
    assert stats is not None
    assert (stats.count, stats.values, stats.min, stats.max, stats.last) == (
        4, 3, 9007199254740992.0, 2**64 - 1, 2**64 - 1)
    assert type(stats.min) is float  # the double itself, smaller than 2^53 + 1


async def test_old_readings_stay_readable_after_the_migration(ledger: Ledger) -> None:
    """Rows stored before `value_int` existed (NULL there) read as the double they were."""
    await ledger.write([Reading("press07", "old", T0, 5.0)])
    await ledger.writer.settle()  # into `readings`, where rows from before the migration are
    async with ledger.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE readings SET value_int = NULL")
        await conn.exec_driver_sql("UPDATE latest_readings SET value_int = NULL")
    (series, point), = await ledger.latest.of_machine("press07")
    assert (series.tag, point.value, point.quality, point.status) == ("old", 5.0, GOOD, None)
    await ledger.write([Reading("press07", "old", T0 + S, 7, Quality.GOOD)])
    (series, point), = await ledger.latest.of_machine("press07")
    assert point.value == 7 and type(point.value) is int


async def test_an_integer_beyond_64_bits_is_refused_with_a_reason() -> None:
    from adapters.mqtt.payload import PayloadError, coerce

    with pytest.raises(PayloadError, match=r"does not fit in 64 bits \(from -2\^63 to 2\^64-1\)"):
        coerce(2**64, "number")
    with pytest.raises(PayloadError, match="does not fit in 64 bits"):
        coerce(str(-(2**63) - 1), "number")
    assert coerce("18446744073709551615", "number") == 2**64 - 1
