"""The sample configs parse as written; what sample.yaml reads from each payload is the cases
in tests/cases/mqtt, run against a Mosquitto of their own by tests/test_cases.py."""

from __future__ import annotations

from collector.config import load_config

from .conftest import SAMPLE


def test_sample_is_a_valid_config():
    config = load_config(SAMPLE)
    assert config.counts() == (1, 1, 13)


def test_example_config_is_valid(monkeypatch):
    monkeypatch.setenv("MQTT_PASSWORD", "secret")
    config = load_config(SAMPLE.parents[2] / "config" / "mqtt-sensors.yaml")
    assert config.counts() == (3, 3, 7)
    stack = config.machines[2].sources[0].tags[0]
    assert stack.is_template and stack.template.filter == "stacklight/line2/+/+"
