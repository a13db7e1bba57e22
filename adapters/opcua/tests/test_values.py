"""Every scalar type, arrays, bad/uncertain status and timestamps, in subscribe and poll mode."""

from __future__ import annotations

from typing import Any

import pytest
from asyncua import ua

from collector.model import BAD, GOOD, UNCERTAIN, us_from_datetime
from tests.kit.waiting import wait_for

from .conftest import Running, source_config
from .press07 import GUID, STAMP

EXPECTED = {
    "bool": True,
    "sbyte": -128,
    "byte": 255,
    "int16": -32768,
    "uint16": 65535,
    "int32": -2147483648,
    "uint32": 4294967295,
    "int64": -9223372036854775808,
    "uint64": 18446744073709551615,
    "float": 21.3,  # a Float is stored as the shortest decimal of the 32-bit value
    "double": 1234.5678901234,
    "string": "Press 07 ✓",
    "datetime": "2024-05-06T07:08:09.123456Z",
    "text": "running",
    "bytes": "00ff4142",
    "guid": str(GUID),
}


def scalar_tags() -> list[dict[str, Any]]:
    names = {"bool": "Bool", "sbyte": "SByte", "byte": "Byte", "int16": "Int16", "uint16": "UInt16",
             "int32": "Int32", "uint32": "UInt32", "int64": "Int64", "uint64": "UInt64", "float": "Float",
             "double": "Double", "string": "String", "datetime": "DateTime", "text": "Text",
             "bytes": "Bytes", "guid": "Guid"}
    return [{"name": tag, "node": f"ns=2;s=Press07.{node}"} for tag, node in names.items()]


SPECIAL_TAGS: list[dict[str, Any]] = [
    {"name": "temperature", "node": "ns=2;i=42", "unit": "degC"},
    {"name": "by_guid", "node": f"ns=2;g={GUID}"},
    {"name": "opaque", "node": "ns=2;b=AQJwcmVzcw=="},
    {"name": "by_uri", "node": "nsu=urn:retrofit:test;s=Press07.Int16"},
    {"name": "by_path", "browse_path": "2:Press07/2:Double"},
    {"name": "arr1", "node": "ns=2;s=Press07.Array", "index": 1},
    {"name": "arr2", "node": "ns=2;s=Press07.Array", "index": 2, "scale": 0.5},
    {"name": "broken", "node": "ns=2;s=Press07.Broken"},
    {"name": "doubtful", "node": "ns=2;s=Press07.Doubtful"},
    {"name": "scaled", "node": "ns=2;s=Press07.Int16", "scale": 0.1, "offset": 5},
    {"name": "no_value", "node": "ns=2;s=Press07.UInt16", "nan_value": 65535},
    {"name": "clamped", "node": "ns=2;s=Press07.Int16", "clamp_min": -100},
]


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_every_scalar_type_and_node_form(opc_server, mode: str) -> None:
    tags = scalar_tags() + SPECIAL_TAGS
    async with Running(source_config(opc_server.url, tags, mode=mode)) as run:
        sink = run.sink
        await wait_for(lambda: all(sink.of(t["name"]) for t in tags), what="a reading of every tag")
        for tag, value in EXPECTED.items():
            reading = sink.last(tag)
            assert reading.quality is GOOD, tag
            assert reading.value == value and type(reading.value) is type(value), (tag, reading.value)
        assert sink.last("temperature").value == 20.5
        assert sink.last("by_guid").value == 7
        assert sink.last("opaque").value == 8
        assert sink.last("by_uri").value == -32768
        assert sink.last("by_path").value == 1234.5678901234
        assert sink.last("arr1").value == 20
        assert sink.last("arr2").value == 15.0
        assert sink.last("scaled").value == pytest.approx(-3271.8)
        no_value = sink.last("no_value")  # the node holds the tag's nan_value
        assert no_value.quality is BAD and no_value.value is None
        clamped = sink.last("clamped")  # -32768 held at clamp_min, still an integer
        assert clamped.quality is GOOD and clamped.value == -100 and type(clamped.value) is int
        broken = sink.last("broken")
        assert broken.quality is BAD and broken.value is None
        doubtful = sink.last("doubtful")
        assert doubtful.quality is UNCERTAIN and doubtful.value == 3.25
        assert doubtful.ts == us_from_datetime(STAMP)  # the source timestamp is kept
        assert run.per_tag("tag_status")["broken"] == "BadSensorFailure"
        assert run.health.connected


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_changes_arrive_with_source_timestamps(opc_server, mode: str) -> None:
    tags = [{"name": "counter", "node": "ns=2;s=Press07.Counter"}]
    async with Running(source_config(opc_server.url, tags, mode=mode)) as run:
        await wait_for(lambda: run.sink.of("counter"), what="the first value")
        for value in (101, 102, 103):
            await opc_server.write("Counter", value, ua.VariantType.Int32)

            def arrived(v: int = value) -> bool:
                return run.sink.last("counter").value == v

            await wait_for(arrived, what=f"counter == {value}")
        seen = [r.value for r in run.sink.of("counter")]
        if mode == "subscribe":  # every change is notified once, in order
            assert seen[-3:] == [101, 102, 103]
        stamps = [r.ts for r in run.sink.of("counter")]
        assert stamps == sorted(stamps)


async def test_array_without_index_is_rejected_with_a_clear_message(opc_server) -> None:
    tags = [{"name": "levels", "node": "ns=2;s=Press07.Array"}, {"name": "ok", "node": "ns=2;i=42"}]
    async with Running(source_config(opc_server.url, tags)) as run:
        await wait_for(lambda: run.sink.of("levels") and run.sink.of("ok"), what="readings")
        assert run.sink.last("levels").quality is BAD
        assert run.sink.last("ok").value == 20.5
        message = run.per_tag("tag_errors")["levels"]
        assert "array of 3 values" in message and "index" in message
        assert "press07" in run.last_error and "'levels'" in run.last_error


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_unknown_node_and_browse_path_are_named(opc_server, mode: str) -> None:
    tags = [{"name": "ghost", "node": "ns=2;s=Press07.Nope"},
            {"name": "lost", "browse_path": "2:Press07/2:Missing"},
            {"name": "ok", "node": "ns=2;i=42"}]
    async with Running(source_config(opc_server.url, tags, mode=mode)) as run:
        await wait_for(lambda: run.sink.of("ok") and len(run.per_tag("tag_errors")) == 2, what="errors")
        errors = run.per_tag("tag_errors")
        assert "ns=2;s=Press07.Nope does not exist on the server (BadNodeIdUnknown)" in errors["ghost"]
        assert "2:Press07/2:Missing was not found" in errors["lost"]
        assert run.sink.last("ghost").quality is BAD and run.sink.last("lost").quality is BAD
        assert run.sink.last("ok").quality is GOOD
