"""sample.yaml end to end: each golden case published to the machine's Mosquitto."""

from __future__ import annotations

import pytest
import yaml

from collector.config import load_config, parse_config

from .conftest import wait_for
from .golden import CASES, SAMPLE


def test_sample_is_a_valid_config():
    config = load_config(SAMPLE)
    assert config.counts() == (1, 1, 13)


@pytest.fixture
async def sample_run(run_adapter, prefix):
    data = yaml.safe_load(SAMPLE.read_text())
    src = data["machines"][0]["sources"][0]
    src["client_id"] = f"golden-{prefix.rsplit('/', 1)[-1]}"
    for tag in src["tags"]:
        tag["topic"] = tag["topic"].replace("sample/", f"{prefix}/", 1)
    return await run_adapter(parse_config(yaml.safe_dump(data)))


@pytest.mark.parametrize(("topic", "payload", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_golden(sample_run, publisher, prefix, topic, payload, expected):
    publisher.publish(f"{prefix}/{topic}", payload)
    await wait_for(lambda: len(sample_run.sink.readings) >= len(expected))
    got = [(r.machine, r.tag, r.value, r.quality) for r in sample_run.sink.readings]
    assert got == [e[:4] for e in expected]
    for reading, (*_, ts) in zip(sample_run.sink.readings, expected, strict=True):
        if ts is not None:
            assert reading.ts == ts
        else:  # receive time
            assert abs(reading.ts - sample_run.health.last_ok) < 60_000_000


def test_example_config_is_valid(monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD", "secret")
    config = load_config(SAMPLE.parents[2] / "config" / "mqtt-sensors.yaml")
    assert config.counts() == (3, 3, 7)
    stack = config.machines[2].sources[0].tags[0]
    assert stack.is_template and stack.template.filter == "stacklight/line2/+/+"
