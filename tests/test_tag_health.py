"""Health per tag with real peers: a register the pymodbus device refuses makes its machine
degraded and `/api/v1/health` names the tag and the device's answer; an MQTT tag that stops
updating on the machine's Mosquitto goes stale after its `stale_after` and recovers with the
next message; a pushed tag without `stale_after` may stay silent."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import registry
from api.server import ApiServer
from collector.config import parse_config
from collector.runtime import Runtime
from collector.taghealth import stale_limit
from tests.kit.modbus import Device, sim_device
from tests.kit.mqtt import Publisher
from tests.kit.waiting import wait_for

registry()


def config(tmp_path: Path, machines: str) -> str:
    return (f"ledger: {{url: 'sqlite:///{tmp_path}/ledger.db'}}\n"
            f"spool: {{path: '{tmp_path}/spool.db'}}\n"
            f"pipeline: {{flush_interval: 50ms}}\napi: {{port: 0}}\nmachines:\n{machines}")


async def health(rt: Runtime) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}") as client:
        return (await client.get("/api/v1/health")).json()


async def test_a_refused_register_makes_the_machine_degraded_and_names_tag_and_answer(
        tmp_path: Path) -> None:
    async with Device([sim_device(1, registers=((0, 10),))]) as device:
        await device.set("holding", 0, [215, 42])
        cfg = parse_config(config(tmp_path, f"""\
  - id: press07
    sources:
      - {{id: io, protocol: modbus, host: 127.0.0.1, port: {device.port}, interval: 200ms,
          tags: [{{name: motor_current, address: 0, scale: 0.1}},
                 {{name: ghost, address: 50}}]}}
  - id: oven02
    sources:
      - {{id: plc, protocol: modbus, host: 127.0.0.1, port: {device.port}, interval: 200ms,
          tags: [{{name: zone1, address: 1}}]}}
"""))
        async with Runtime(cfg, api=ApiServer) as rt:
            await wait_for(lambda: rt.health_of("press07", "io").errors >= 2, 15, "errors")
            body = await health(rt)
    assert body["status"] == "degraded"
    io, plc = body["sources"]
    assert io["connected"] is True and io["last_ok"] is not None  # the source itself delivers
    assert io["tags_total"] == 2 and plc["tags_total"] == 1
    (problem,) = io["tag_problems"]
    assert (problem["tag"], problem["problem"]) == ("ghost", "bad")
    assert problem["since"].endswith("Z")
    assert "exception 2 (illegal data address) reading holding 50 (tags ghost)" in problem["reason"]
    assert "check the tag's address" in problem["reason"]
    assert plc["tag_problems"] == []  # the other machine is fine
    (sentence,) = body["problems"]
    assert sentence.startswith("machine 'press07' source 'io' tag 'ghost' is bad: unit 1 "
                               "answered exception 2")


async def test_an_mqtt_tag_that_stops_updating_goes_stale_and_recovers(tmp_path: Path) -> None:
    base = f"test-taghealth/{uuid.uuid4().hex[:8]}"
    cfg = parse_config(config(tmp_path, f"""\
  - id: comp01
    sources:
      - id: sensors
        protocol: mqtt
        broker: mqtt://127.0.0.1:1883
        tags:
          - {{name: pressure, topic: {base}/pressure, stale_after: 1s}}
          - {{name: battery, topic: {base}/battery}}
"""))
    async with Runtime(cfg, api=ApiServer) as rt:
        await wait_for(lambda: rt.health_of("comp01", "sensors").connected, 15, "connected")
        with Publisher() as pub:
            pub.publish(f"{base}/battery", "87")
            for _ in range(3):
                pub.publish(f"{base}/pressure", "6.2")
            watch = rt.health_of("comp01", "sensors").tags
            await wait_for(lambda: watch.tags["pressure"].last_good is not None, 10, "a reading")
            fresh = await health(rt)
            assert fresh["status"] == "ok" and fresh["problems"] == []
            await wait_for(lambda: watch.problems(), 5, "stale")
            stale = await health(rt)
            pub.publish(f"{base}/pressure", "6.3")
            await wait_for(lambda: not watch.problems(), 10, "fresh again")
            again = await health(rt)
    assert stale["status"] == "degraded"
    (problem,) = stale["sources"][0]["tag_problems"]
    assert (problem["tag"], problem["problem"]) == ("pressure", "stale")
    assert problem["reason"].startswith("no new reading for ")
    assert "(stale after 1 s)" in problem["reason"]
    assert stale["problems"] == [f"machine 'comp01' source 'sensors' tag 'pressure' is stale: "
                                 f"{problem['reason']}"]
    assert again["status"] == "ok"  # battery has been silent all along: pushed, no stale_after


def source(text: str) -> Any:
    return parse_config(f"machines:\n  - id: m\n    sources:\n{text}").machines[0].sources[0]


@pytest.mark.parametrize(("text", "limit"), [
    ("      - {id: s, protocol: modbus, host: h, interval: 1s}", 3.0),
    ("      - {id: s, protocol: modbus, host: h, interval: 200ms}", 2.0),  # at least 2 s
    ("      - {id: s, protocol: modbus, host: h, interval: 1s, stale_after: 10s}", 10.0),
    ("      - {id: s, protocol: modbus, host: h, stale_after: 0}", None),
    ("      - {id: s, protocol: opcua, endpoint: 'opc.tcp://h:4840', interval: 5s}", None),
    ("      - {id: s, protocol: opcua, endpoint: 'opc.tcp://h:4840', mode: poll, interval: 5s}",
     15.0),
    ("      - {id: s, protocol: mqtt, broker: 'mqtt://h'}", None),
    ("      - {id: s, protocol: mqtt, broker: 'mqtt://h', stale_after: 2m}", 120.0),
])
def test_stale_after_defaults_to_three_polls_and_never_for_pushed_data(
        text: str, limit: float | None) -> None:
    assert stale_limit(source(text)) == limit


def test_a_tag_stale_after_wins_over_its_source() -> None:
    src = source("      - {id: s, protocol: mqtt, broker: 'mqtt://h', stale_after: 2m, tags: [\n"
                 "          {name: a, topic: x/a, stale_after: 5s}, {name: b, topic: x/b, "
                 "stale_after: 0}]}")
    assert [stale_limit(src, t.stale_after) for t in src.tags] == [5.0, None]
