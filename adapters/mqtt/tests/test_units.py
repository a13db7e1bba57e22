"""Payload decoding, topic templates and config validation, without a broker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.mqtt.payload import (
    PayloadError,
    TagDecoder,
    coerce,
    format_path,
    parse_path,
    plain_value,
    timestamp_us,
)
from adapters.mqtt.topics import Router, covers, minimal_filters, parse_topic, render_name
from collector.config import ConfigError
from collector.sources.normalise import make_normaliser

from .conftest import config_with, source


@pytest.mark.parametrize(("path", "steps"), [
    ("a", ("a",)), ("a.b.c", ("a", "b", "c")), ("$.a[0].b", ("a", 0, "b")), ("[2]", (2,)),
    ("$", ()), ('a["x.y"].z', ("a", "x.y", "z")), ("a[-1]", ("a", -1)), ("a.0", ("a", "0")),
])
def test_parse_path(path, steps):
    assert parse_path(path) == steps


@pytest.mark.parametrize("bad", ["a..b", "a[", "a[x]", ".", "a]"])
def test_parse_path_rejects(bad):
    with pytest.raises(ValueError, match="json path"):
        parse_path(bad)


@given(st.lists(st.one_of(st.integers(0, 99), st.text(min_size=1, max_size=8).filter(
    lambda s: '"' not in s and "'" not in s and "[" not in s and "]" not in s and s.strip() == s
    and s)), max_size=5))
def test_format_then_parse_round_trip(steps):
    assert parse_path(format_path(tuple(steps))) == tuple(steps)


@pytest.mark.parametrize(("raw", "value"), [
    (b"21.5", 21.5), (b" 42 ", 42), (b"true", True), (b"FALSE", False), (b"RUN", "RUN"),
    (b"-1e3", -1000.0), (b"nan", "nan"),
])
def test_plain_value(raw, value):
    assert plain_value(raw) == value and type(plain_value(raw)) is type(value)


@pytest.mark.parametrize(("value", "kind", "expected"), [
    ("12.5", "number", 12.5), ("7", "number", 7), (3, "bool", True), ("off", "bool", False),
    (12, "text", "12"), ({"a": 1}, "text", '{"a":1}'), ("x", "auto", "x"),
])
def test_coerce(value, kind, expected):
    assert coerce(value, kind) == expected


@pytest.mark.parametrize(("value", "kind"), [
    ("high", "number"), (True, "number"), (None, "number"), (float("inf"), "number"),
    ("maybe", "bool"), (None, "text"), ([1], "auto"),
])
def test_coerce_rejects(value, kind):
    with pytest.raises(PayloadError):
        coerce(value, kind)


@pytest.mark.parametrize(("value", "unit", "us"), [
    (1_700_000_000, "auto", 1_700_000_000_000_000), (1_700_000_000_123, "auto", 1_700_000_000_123_000),
    (1_700_000_000_123_456, "auto", 1_700_000_000_123_456), (1.5, "s", 1_500_000),
    ("1700000000000", "auto", 1_700_000_000_000_000), ("2023-11-14T22:13:20Z", "auto", 1_700_000_000_000_000),
    ("2023-11-14T23:13:20.5+01:00", "auto", 1_700_000_000_500_000), (5, "ms", 5000),
])
def test_timestamps(value, unit, us):
    assert timestamp_us(value, unit) == us


@pytest.mark.parametrize("value", ["yesterday", None, True, [1], float("nan")])
def test_bad_timestamps(value):
    with pytest.raises(PayloadError, match="timestamp"):
        timestamp_us(value)


def test_decoder_scale_and_missing_path():
    decoder = TagDecoder("a.b[1]", None, "number", make_normaliser(0.5, 1))
    assert decoder.value(b"", {"a": {"b": [0, 10]}}) == 6.0
    with pytest.raises(PayloadError, match="list has no item"):
        decoder.value(b"", {"a": {"b": [0]}})
    with pytest.raises(PayloadError, match="key 'a' is missing"):
        decoder.value(b"", {"x": 1})


def test_topic_templates():
    t = parse_topic("plant1/+/{machine}/{tag}")
    assert t.filter == "plant1/+/+/+" and t.variables == ("machine", "tag")
    assert t.match("plant1/l2/press07/temp".split("/")) == {"machine": "press07", "tag": "temp"}
    assert t.match("plant1/l2/press07".split("/")) is None
    hash_ = parse_topic("a/#")
    assert hash_.match(["a"]) == {} and hash_.match(["a", "b", "c"]) == {}
    assert parse_topic("#").match(["$SYS", "x"]) is None
    assert render_name("power_{phase}", {"phase": "L1 "}) == "power_l1"


@pytest.mark.parametrize(("topic", "message"), [
    ("a/#/b", "only allowed as the last level"), ("a/b+/c", "mixes a wildcard"),
    ("a/x{tag}/c", "whole-level"), ("a/{tag}/{tag}", "twice"), ("", "empty"),
    ("$share/g/a", "shared subscriptions"),
])
def test_topic_template_errors(topic, message):
    with pytest.raises(ValueError, match=message):
        parse_topic(topic)


def test_covers_and_minimal_filters():
    assert covers("a/#", "a/b/c") and covers("a/+/c", "a/b/c") and covers("#", "a/+")
    assert not covers("a/+", "a/#") and not covers("a/b", "a/+") and not covers("a/+", "a/b/c")
    assert minimal_filters(["a/b", "a/#", "a/+/c", "x/y", "x/y"]) == ["a/#", "x/y"]


def test_router_finds_every_matching_route():
    router = Router([(parse_topic("a/b"), 1), (parse_topic("a/+"), 2), (parse_topic("a/{x}"), 3),
                     (parse_topic("b/#"), 4)])
    assert router.lookup("a/b") == [(1, {}), (2, {}), (3, {"x": "b"})]
    assert router.lookup("b/c/d") == [(4, {})]
    assert router.lookup("c") == []


@pytest.mark.parametrize(("override", "where", "message"), [
    ({"broker": "tcp://x"}, "broker", "must start with mqtt://"),
    ({"broker": "mqtt://"}, "broker", "has no host"),
    ({"ca_file": "/x.pem"}, "ca_file", "only used with TLS"),
    ({"broker": "mqtts://h", "key_file": "k"}, "key_file", "needs cert_file"),
    ({"password": "x"}, "password", "needs a username"),
    ({"qos": 3}, "qos", "3"),
    ({"version": "4"}, "version", "'4'"),
])
def test_source_config_errors(override, where, message):
    with pytest.raises(ConfigError) as err:
        config_with([source([{"name": "v", "topic": "a/b"}], **override)])
    text = str(err.value)
    assert f"sources[0].{where}:" in text and message in text


@pytest.mark.parametrize(("tag", "where", "message"), [
    ({"name": "{tag}", "topic": "a/b"}, "name", "binds no level named {tag}"),
    ({"name": "v", "topic": "a/{tag}"}, "name", 'write name: "{tag}"'),
    ({"name": "Temp", "topic": "a"}, "name", "lowercase letters"),
    ({"name": "v", "topic": "a/#/b"}, "topic", "last level"),
    ({"name": "v", "topic": "a", "json": "x..y"}, "json", "not valid"),
    ({"name": "v", "topic": "a", "timestamp": "ts"}, "timestamp", "needs a JSON payload"),
    ({"name": "v", "topic": "a", "type": "bool", "scale": 2}, "scale", "apply to numbers"),
    ({"name": "v", "topic": "a", "type": "text", "nan_value": 0}, "nan_value", "apply to numbers"),
])
def test_tag_config_errors(tag, where, message):
    with pytest.raises(ConfigError) as err:
        config_with([source([tag])])
    text = str(err.value)
    assert f"tags[0].{where}:" in text and message in text


def test_defaults():
    cfg = config_with([source([{"name": "v", "topic": "a"}], broker="mqtts://h", client_id=None,
                              version=5)]).machines[0].sources[0]
    assert (cfg.port, cfg.tls, cfg.version, cfg.qos, cfg.persistent) == (8883, True, "5", 1, True)
    assert cfg.effective_client_id("m1").startswith("collector-") and cfg.effective_client_id("m1").endswith("-m1-sensors")
    qos0 = config_with([source([{"name": "v", "topic": "a"}], qos=0)]).machines[0].sources[0]
    assert not qos0.persistent
