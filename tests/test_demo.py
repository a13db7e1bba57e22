"""`collector demo` end to end: the simulated press, lathe and compressor are read over Modbus
TCP, OPC UA and MQTT into a SQLite ledger, and the API shows three machines with live good
values within 30 s of starting the command; Ctrl-C stops it all with exit code 0."""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from collector.config import load_config
from collector.demo.behaviour import IDLE, RUNNING, STOPPED, standard_behaviour
from collector.demo.lathe import PROGRAMS
from collector.demo.plant import TOPIC_ROOT, Plant
from collector.demo.press import FIRMWARE, PressModel
from tests.kit.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
MACHINES = {"press07": "Press 07", "lathe03": "Lathe 03", "comp01": "Compressor 01"}
LIVE_WITHIN = 30.0  # seconds from starting the command to three machines with live values




def collector_command() -> list[str]:
    script = Path(sys.executable).with_name("collector")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from collector.cli import main; sys.exit(main())"]


class DemoProcess:
    """`collector demo` in a child process of its own, stopped by its PID."""

    def __init__(self, data: Path, env: dict[str, str] | None = None, seconds: float = 300):
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / "demo.log"
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*collector_command(), "demo", "--data", str(data), "--port", str(self.port),
                 "--seconds", str(seconds)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str) -> Any:
        response = httpx.get(self.url + path, timeout=5)
        response.raise_for_status()
        return response.json()

    def wait_until(self, check: Callable[[], Any], until: float, what: str) -> Any:
        """Poll `check()` until it gives something truthy, until `until` (monotonic)."""
        last_error: Exception | None = None
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise AssertionError(f"the demo exited with {self.process.returncode}:\n"
                                     f"{self.output()[-3000:]}")
            try:
                result = check()
                if result:
                    return result
            except (httpx.HTTPError, AssertionError, KeyError) as exc:
                last_error = exc
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {until - self.started:.0f} s of starting the "
                             f"demo (last problem: {last_error})\n{self.output()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    """One demo for the module, as `make demo` starts it (default simulator ports when free)."""
    proc = DemoProcess(tmp_path_factory.mktemp("demo") / "demo-data")
    yield proc
    proc.stop()


def latest_by_machine(demo: DemoProcess) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for item in demo.get("/api/v1/tags")["items"]:
        out.setdefault(item["machine"], {})[item["tag"]] = item
    return out


def all_live_and_good(demo: DemoProcess) -> dict[str, dict[str, dict[str, Any]]] | None:
    """Every source connected, every tag of the three machines with a good reading."""
    health = demo.get("/api/v1/health")
    sources = {(s["machine"], s["source"]): s for s in health["sources"]}
    assert set(sources) == {("press07", "io"), ("press07", "energy"), ("lathe03", "cnc"),
                            ("comp01", "sensors")}
    down = [k for k, s in sources.items() if not (s["connected"] and s["last_ok"])]
    assert not down, f"sources not delivering yet: {down}"
    tags = latest_by_machine(demo)
    assert set(tags) == set(MACHINES)
    missing = [f"{m}/{t}" for m, ts in tags.items() for t, item in ts.items()
               if item["latest"] is None or item["latest"]["quality"] != "good"]
    assert not missing, f"tags without a good value yet: {missing}"
    return tags


def value(tags: dict[str, dict[str, dict[str, Any]]], machine: str, tag: str) -> Any:
    return tags[machine][tag]["latest"]["value"]


def test_three_machines_deliver_live_good_values_within_30_s(demo: DemoProcess) -> None:
    deadline = demo.started + LIVE_WITHIN
    tags = demo.wait_until(lambda: all_live_and_good(demo), deadline, "three machines live")
    machines = demo.get("/api/v1/machines")["items"]
    assert {m["id"]: m["name"] for m in machines} == MACHINES
    assert len(tags["press07"]) == 13 and len(tags["lathe03"]) == 6 and len(tags["comp01"]) == 5

    # press: Modbus I/O module (scaled 4-20 mA, bits, CDAB counter, text) and SDM630 floats
    assert 0 <= value(tags, "press07", "motor_current") <= 50
    assert tags["press07"]["motor_current"]["unit"] == "A"
    assert -20 <= value(tags, "press07", "oil_temperature") <= 130
    lights = [value(tags, "press07", f"light_{c}") for c in ("green", "yellow", "red")]
    assert all(isinstance(x, bool) for x in lights) and sum(lights) == 1  # one lamp lit
    assert value(tags, "press07", "firmware") == FIRMWARE
    assert value(tags, "press07", "mode_selector") == 2
    assert 220 <= value(tags, "press07", "voltage_l1") <= 240
    assert value(tags, "press07", "energy_import") > 1000
    # lathe: OPC UA by string id, numeric id, browse path and namespace URI
    assert value(tags, "lathe03", "mode") in ("AUTO", "READY", "STOP")
    assert value(tags, "lathe03", "program") in PROGRAMS
    assert value(tags, "lathe03", "spindle_speed") >= 0
    # compressor: JSON paths with the sensor's timestamp, and a plain-number topic
    assert 0 < value(tags, "comp01", "vibration") < 20
    assert 4 <= value(tags, "comp01", "pressure") <= 9
    assert tags["comp01"]["temperature"]["unit"] == "degC"

    # live: the machines start running, so the press strokes and the sensor keeps publishing
    first_parts = value(tags, "press07", "parts_total")
    first_vib_ts = tags["comp01"]["vibration"]["latest"]["ts"]
    first_speed_ts = tags["lathe03"]["spindle_speed"]["latest"]["ts"]

    def moved() -> bool:
        now = latest_by_machine(demo)
        return (value(now, "press07", "parts_total") > first_parts
                and now["comp01"]["vibration"]["latest"]["ts"] > first_vib_ts
                and now["lathe03"]["spindle_speed"]["latest"]["ts"] > first_speed_ts)

    demo.wait_until(moved, deadline, "values moving on all three machines")


def test_states_parts_and_oee_within_a_minute(demo: DemoProcess) -> None:
    deadline = demo.started + 60

    def derived() -> dict[str, Any]:
        machines = {m["id"]: m["state"] for m in demo.get("/api/v1/machines")["items"]}
        assert all(state in ("running", "idle", "stopped") for state in machines.values()), machines
        parts = demo.get("/api/v1/machines/press07/production")
        assert parts["total"] > 0, parts
        oee = demo.get("/api/v1/machines/press07/oee")
        assert oee["availability"] is not None and oee["performance"] is not None
        return machines

    demo.wait_until(derived, deadline, "states, parts and OEE of the demo machines")
    day = demo.get("/api/v1/ledger/daily")
    assert {row["machine"] for row in day["items"]} == set(MACHINES)
    assert [s["name"] for s in day["shifts"]] == ["early", "late", "night"]


def test_effective_config_is_the_template_with_this_runs_addresses(demo: DemoProcess) -> None:
    demo.wait_until(lambda: "Status page:" in demo.output(), demo.started + LIVE_WITHIN,
                    "the status page URL printed")
    assert f"Status page: http://127.0.0.1:{demo.port}/" in demo.output()
    effective = demo.data / "demo.yaml"
    check = subprocess.run([*collector_command(), "check", "-c", str(effective)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "3 machines, 4 sources, 24 tags"
    config = load_config(effective)
    assert config.api.port == demo.port
    assert config.ledger.url == f"sqlite:///{demo.data / 'ledger.db'}"


def test_ctrl_c_stops_everything_with_exit_0_and_the_ledger_keeps_the_readings(
        demo: DemoProcess) -> None:
    demo.wait_until(lambda: all_live_and_good(demo), demo.started + 60, "machines live")
    time.sleep(max(0.0, demo.started + 15 - time.monotonic()))  # the compressor reports every ~1 s
    started = time.monotonic()
    assert demo.stop() == 0, demo.output()[-3000:]
    assert time.monotonic() - started < 20
    assert "Traceback" not in demo.output()
    with sqlite3.connect(demo.data / "ledger.db") as db:
        rows = dict(db.execute(
            "SELECT s.machine_id, count(*) FROM readings_all r JOIN series s ON s.id = r.series_id "
            "GROUP BY s.machine_id").fetchall())
    assert set(rows) == set(MACHINES) and min(rows.values()) > 10


def test_embedded_broker_when_asked(tmp_path: Path) -> None:
    """Without Mosquitto (forced here) the compressor's sensor talks to an in-process broker."""
    import amqtt  # noqa: F401  (the `demo` extra, which `make install` installs)
    proc = DemoProcess(tmp_path / "demo-data",
                       env={"COLLECTOR_DEMO_MQTT": "embedded", "COLLECTOR_DEMO_PORTS": "free"})
    try:
        def compressor_live() -> bool:
            tags = latest_by_machine(proc)["comp01"]
            return all(t["latest"] and t["latest"]["quality"] == "good" for t in tags.values())

        proc.wait_until(compressor_live, proc.started + LIVE_WITHIN, "compressor values")
        assert "(embedded)" in proc.output()
        broker = load_config(proc.data / "demo.yaml").machines[2].sources[0]
        assert broker.broker != "mqtt://127.0.0.1:1883"  # a port of its own
        assert broker.tags[0].topic == f"{TOPIC_ROOT}/telemetry"
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*collector_command(), "demo", "--data", str(tmp_path), "--port", str(port)],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"collector demo: port {port} is in use (another collector "
                                     "or demo?); stop it, or choose another port with --port")


def test_template_and_effective_config_differ_only_in_addresses(tmp_path: Path) -> None:
    template = ROOT / "config" / "demo.yaml"
    plant = Plant(tmp_path, api_port=18080, io_port=15020, meter_port=15021, opcua_port=14840,
                  mqtt_port=11883, mqtt_kind="embedded")
    ours = yaml.safe_load(plant.config_text(template).split("\n", 2)[2])
    theirs = yaml.safe_load(template.read_text())
    assert ours["api"]["port"] == 18080
    sources = {(m["id"], s["id"]): s for m in ours["machines"] for s in m["sources"]}
    assert sources[("press07", "io")]["port"] == 15020
    assert sources[("press07", "energy")]["port"] == 15021
    assert sources[("lathe03", "cnc")]["endpoint"] == "opc.tcp://127.0.0.1:14840"
    assert sources[("comp01", "sensors")]["broker"] == "mqtt://127.0.0.1:11883"
    for machine, original in zip(ours["machines"], theirs["machines"], strict=True):
        for source, before in zip(machine["sources"], original["sources"], strict=True):
            assert source["tags"] == before["tags"]  # what is read never changes


def test_press_counts_parts_only_while_running() -> None:
    rng = random.Random(7)
    press = PressModel(rng, standard_behaviour(rng))
    press.behaviour.start(0.0, RUNNING)
    counted = {RUNNING: 0, IDLE: 0, STOPPED: 0}
    t = 0.0
    while t < 3600:
        before, state = press.parts, press.behaviour.state
        t += 0.1
        press.tick(t, 0.1)
        if press.behaviour.state == state:
            counted[state] += press.parts - before
        lights = press.lights()
        assert sum(lights) == 1 and lights[["running", "idle", "stopped"].index(
            press.behaviour.state)]
        assert press.guard_closed or press.behaviour.state == STOPPED  # shut to run
    assert counted[IDLE] == counted[STOPPED] == 0
    assert counted[RUNNING] > 100
    assert press.behaviour.changes > 20  # it ran, idled and stopped many times in an hour
    assert {state for _, state in press.behaviour.history} == {RUNNING, IDLE, STOPPED}
