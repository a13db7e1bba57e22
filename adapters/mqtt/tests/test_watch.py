"""`collector mqtt-watch`, called like the CLI does, while a publisher sends to the shared broker."""

from __future__ import annotations

import argparse
import json
import threading
import time

import yaml

from adapters.mqtt.command import add_cli
from adapters.mqtt.watch import flatten, looks_like_time
from tests.kit.mqtt import Publisher
from tests.kit.ports import free_port


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    return parser.parse_args(["mqtt-watch", *argv])


def publish_for(seconds: float, items: list[tuple[str, str]]) -> threading.Thread:
    def run() -> None:
        pub = Publisher()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for topic, payload in items:
                pub.publish(topic, payload, qos=0)
            time.sleep(0.05)
        pub.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_watch_shows_topics_shapes_and_yaml(capsys, prefix):
    telemetry = json.dumps({"current_a": 12.5, "ts": 1_700_000_000_123, "run": True,
                            "phases": [{"v": 229.1}, {"v": 230.4}], "state": "RUN"})
    thread = publish_for(2.5, [(f"{prefix}/press07/telemetry", telemetry),
                               (f"{prefix}/press07/temp", "21.5")])
    args = parse("--broker", "mqtt://127.0.0.1:1883", "--topic", f"{prefix}/#", "--seconds", "2")
    assert args.func(args) == 0
    thread.join()
    out = capsys.readouterr().out
    assert f"{prefix}/press07/telemetry" in out and "/s" in out
    assert "phases[1].v = 230.4" in out and "ts = 1700000000123  (timestamp?)" in out
    pasted = yaml.safe_load(out.split("# paste under a source with protocol: mqtt", 1)[1].split("\n", 1)[1])
    tags = {t["name"]: t for t in pasted["tags"]}
    assert tags["current_a"] == {"name": "current_a", "topic": f"{prefix}/press07/telemetry",
                                 "json": "current_a", "timestamp": "ts"}
    assert tags["phases_1_v"]["json"] == "phases[1].v"
    assert tags["run"]["type"] == "bool" and tags["state"]["type"] == "text"
    assert tags["temp"] == {"name": "temp", "topic": f"{prefix}/press07/temp"}
    assert "ts" not in tags  # the device clock is offered as `timestamp`, not as a tag


def test_watch_broker_unreachable(capsys):
    args = parse("--broker", f"mqtt://127.0.0.1:{free_port()}", "--seconds", "1")
    assert args.func(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "connection refused" in err[0]


def test_watch_bad_input(capsys):
    assert parse("--broker", "http://x").func(parse("--broker", "http://x")) == 2
    assert "mqtt://" in capsys.readouterr().err
    args = parse("--broker", "mqtt://127.0.0.1", "--topic", "a/#/b")
    assert args.func(args) == 2
    assert "'#' is only allowed as the last level" in capsys.readouterr().err


def test_flatten_and_time_detection():
    assert flatten({"a": {"b": [1, {"c": "x"}]}, "k.d": True}) == {
        "a.b[0]": 1, "a.b[1].c": "x", '["k.d"]': True}
    assert looks_like_time("ts", 5) and looks_like_time("x", 1_700_000_000_000)
    assert looks_like_time("when", "2024-05-01T10:00:00Z") and not looks_like_time("temp", 21.5)
