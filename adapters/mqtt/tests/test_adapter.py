"""The adapter against the machine's Mosquitto: payload kinds, timestamps, wildcards, QoS."""

from __future__ import annotations

import json

from collector.model import BAD, GOOD, UNCERTAIN
from tests.kit.waiting import wait_for

from .conftest import config_with, source


async def test_plain_payloads(run_adapter, publisher, prefix):
    cfg = config_with([source([
        {"name": "temp", "topic": f"{prefix}/temp", "scale": 0.1, "offset": 1, "unit": "degC"},
        {"name": "door", "topic": f"{prefix}/door", "type": "bool"},
        {"name": "mode", "topic": f"{prefix}/mode", "type": "text"},
        {"name": "count", "topic": f"{prefix}/count", "type": "auto"},
    ], qos=0)])
    run = await run_adapter(cfg)
    publisher.publish(f"{prefix}/temp", "215", qos=0)
    publisher.publish(f"{prefix}/door", "true", qos=0)
    publisher.publish(f"{prefix}/mode", "RUN", qos=0)
    publisher.publish(f"{prefix}/count", "42", qos=0)
    await wait_for(lambda: len(run.sink.readings) == 4)
    got = {r.tag: r for r in run.sink.readings}
    assert got["temp"].value == 22.5 and got["temp"].quality == GOOD
    assert got["door"].value is True
    assert got["mode"].value == "RUN"
    assert got["count"].value == 42 and isinstance(got["count"].value, int)
    assert all(r.machine == "m1" for r in run.sink.readings)


async def test_json_paths_and_timestamps(run_adapter, publisher, prefix):
    topic = f"{prefix}/telemetry"
    cfg = config_with([source([
        {"name": "current", "topic": topic, "json": "current_a", "timestamp": "ts"},
        {"name": "phase2", "topic": topic, "json": "phases[1].v", "timestamp": "ts"},
        {"name": "temp_s", "topic": f"{prefix}/s", "json": "t", "timestamp": "time"},
        {"name": "temp_iso", "topic": f"{prefix}/iso", "json": "$.data['temp.c']", "timestamp": "at"},
    ])])
    run = await run_adapter(cfg)
    publisher.publish(topic, json.dumps({"current_a": 12.5, "ts": 1_700_000_000_123,
                                          "phases": [{"v": 229.1}, {"v": 230.4}]}))
    publisher.publish(f"{prefix}/s", json.dumps({"t": 20, "time": 1_700_000_000.5}))
    publisher.publish(f"{prefix}/iso", json.dumps({"data": {"temp.c": 21.0},
                                                    "at": "2024-05-01T10:00:00.250+02:00"}))
    await wait_for(lambda: len(run.sink.readings) == 4)
    got = {r.tag: r for r in run.sink.readings}
    assert got["current"].value == 12.5 and got["current"].ts == 1_700_000_000_123_000
    assert got["phase2"].value == 230.4 and got["phase2"].ts == 1_700_000_000_123_000
    assert got["temp_s"].ts == 1_700_000_000_500_000
    assert got["temp_iso"].value == 21.0 and got["temp_iso"].ts == 1_714_550_400_250_000
    # one subscription serves both tags on the telemetry topic
    assert run.adapter.filters.count(topic) == 1


async def test_wildcards_bind_machine_and_tag(run_adapter, publisher, prefix):
    cfg = config_with([source([
        {"name": "{tag}", "topic": f"{prefix}/+/{{machine}}/{{tag}}"},
        {"name": "energy_{phase}", "topic": f"{prefix}/meter/{{phase}}/energy/kwh", "json": "v"},
        {"name": "any_temp", "topic": f"{prefix}/temps/#"},
    ])])
    run = await run_adapter(cfg)
    publisher.publish(f"{prefix}/line2/Press-07/Motor Current", "3.5")
    publisher.publish(f"{prefix}/line2/lathe1/spindle_rpm", "1200")
    publisher.publish(f"{prefix}/meter/L1/energy/kwh", '{"v": 7}')
    publisher.publish(f"{prefix}/temps/a/b/c", "19.5")
    await wait_for(lambda: len(run.sink.readings) == 4)
    got = {(r.machine, r.tag): r.value for r in run.sink.readings}
    assert got == {("press-07", "motor_current"): 3.5, ("lathe1", "spindle_rpm"): 1200,
                   ("m1", "energy_l1"): 7, ("m1", "any_temp"): 19.5}


async def test_bad_payloads_counted_and_bad_quality(run_adapter, publisher, prefix):
    topic = f"{prefix}/t"
    cfg = config_with([source([
        {"name": "value", "topic": topic, "json": "v", "timestamp": "ts"},
    ], max_payload=200)])
    run = await run_adapter(cfg)
    bad = ['{"v": 1.5, "ts"', '{"w": 1}', '{"v": "high"}', '{"v": 1, "x": "' + "a" * 300 + '"}',
           b"\xff\xfe", '[1, 2]', '{"v": 2, "ts": "yesterday"}']
    for payload in bad:
        publisher.publish(topic, payload)
    publisher.publish(topic, '{"v": 3.5, "ts": 1700000000000}')
    await wait_for(lambda: len(run.sink.readings) == len(bad) + 1)
    values = [(r.value, r.quality) for r in run.sink.readings]
    assert values[:6] == [(None, BAD)] * 6
    assert values[6] == (2, UNCERTAIN)  # the value is fine, its time is not
    assert values[7] == (3.5, GOOD)
    details = run.health.extra
    assert details["bad_payloads"] == {"value": 6}
    assert details["bad_timestamps"] == {"value": 1}
    sample = details["bad_samples"]["value"]
    assert sample["topic"] == topic and "timestamp" in sample["error"]


async def test_qos2_acknowledged_after_commit(run_adapter, publisher, prefix):
    topic = f"{prefix}/q2"
    cfg = config_with([source([{"name": "v", "topic": topic}], qos=2)])
    run = await run_adapter(cfg)
    run.sink.durable_delay = 0.05
    for i in range(20):
        publisher.publish(topic, str(i), qos=2)
    await wait_for(lambda: run.health.extra.get("acked", 0) == 20)
    assert [r.value for r in run.sink.readings] == list(range(20))
    assert run.sink.waited >= 1 and run.health.extra["inflight"] == 0


async def test_retained_messages_can_be_ignored(run_adapter, publisher, prefix):
    topic = f"{prefix}/retained"
    publisher.publish(topic, "1", retain=True)
    try:
        ignoring = await run_adapter(config_with([source([{"name": "v", "topic": topic}],
                                                         retained=False)]))
        taking = await run_adapter(config_with([source([{"name": "v", "topic": topic}])]))
        await wait_for(lambda: len(taking.sink.readings) == 1)
        publisher.publish(topic, "2")
        await wait_for(lambda: len(ignoring.sink.readings) == 1)
        assert [r.value for r in ignoring.sink.readings] == [2]
    finally:
        publisher.publish(topic, b"", retain=True)  # clear the broker's copy
