"""The status page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

`make demo` and the page shows three machines with live values within 30 s; a collector with
a dead source, a dead machine and API keys shows "need attention", "no data", the errors, and
asks for the key; a tag the device refuses turns its machine amber with the tag and the
reason; a press played by a pymodbus server shows its state, today's parts, the shift's OEE
and a bar of its states. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.demo.press import FIRMWARE, PressSimulator
from tests.kit.modbus import Device, sim_device
from tests.kit.ports import free_port
from tests.kit.programs import need_program

from .test_demo import LIVE_WITHIN, MACHINES, ROOT, DemoProcess, collector_command

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"

try:
    from playwright import sync_api
except ImportError:  # the browser tests fail, naming what to install
    sync_api = None

# What the page shows, read from the DOM the way a person reads it.
READ_CARDS = """() => [...document.querySelectorAll('.card')].map(c => ({
  id: c.dataset.machine, status: c.dataset.status,
  name: c.querySelector('.name').textContent, label: c.querySelector('.status').textContent,
  state: c.querySelector('.state').hidden ? null : {
    word: c.querySelector('.state').textContent,
    colour: getComputedStyle(c.querySelector('.state')).color},
  production: c.querySelector('.production').hidden ? null : {
    parts: c.querySelector('.kpi.parts .v').textContent,
    partsSub: c.querySelector('.kpi.parts .sub').textContent,
    oeeLabel: c.querySelector('.kpi.oee .k').textContent,
    oee: c.querySelector('.kpi.oee .v').textContent,
    head: c.querySelector('.timeline-head').textContent,
    bar: [...c.querySelectorAll('.statebar .seg')].map(s => ({
      state: s.dataset.state, width: parseFloat(s.style.width),
      colour: getComputedStyle(s).backgroundColor, image: getComputedStyle(s).backgroundImage}))},
  sources: [...c.querySelectorAll('.source')].map(s => ({
    id: s.dataset.source, connected: s.dataset.connected,
    conn: s.querySelector('.conn').textContent,
    error: s.querySelector('.source-error').hidden ? null
      : s.querySelector('.source-error').textContent})),
  rows: Object.fromEntries([...c.querySelectorAll('.tag')].map(r => [r.dataset.tag, {
    quality: r.dataset.quality, value: r.querySelector('.v').textContent,
    unit: r.querySelector('.u').textContent, age: r.querySelector('.age').textContent,
    spark: [...r.querySelectorAll('.spark polyline')].reduce(
      (n, line) => n + line.getAttribute('points').split(' ').length, 0)}]))}))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless; without it or Playwright the tests fail, naming what to
    install."""
    if sync_api is None:
        pytest.fail("Playwright for Python is not installed: make install (the `test` extra)",
                    pytrace=False)
    executable = need_program("chromium", "chromium")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser: Any, url: str, until: float) -> Any:
    """A 1080p page on `url`, retried while the collector is still starting."""
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    while True:
        try:
            page.goto(url, timeout=10_000)
            return page
        except sync_api.Error:
            if time.monotonic() > until:
                raise
            time.sleep(0.5)


def wait_for(page: Any, check: Callable[[list[dict[str, Any]]], Any], until: float,
             what: str) -> list[dict[str, Any]]:
    """Read the cards until `check(cards)` is true; fail with what the page showed."""
    cards: list[dict[str, Any]] = []
    while time.monotonic() < until:
        cards = page.evaluate(READ_CARDS)
        if check(cards):
            return cards
        page.wait_for_timeout(250)
    raise AssertionError(f"{what}: not shown in time; the page showed {cards}; "
                         f"page errors {page.errors}")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def seconds(age: str) -> float:
    amount, unit = age.split()
    return float(amount) * {"s": 1, "min": 60, "h": 3600, "d": 86400}[unit]


def three_live(cards: list[dict[str, Any]]) -> bool:
    return len(cards) == 3 and all(
        c["status"] == "ok" and len(c["rows"]) >= 5
        and all(r["quality"] == "good" and r["value"] not in ("", "no reading yet")
                for r in c["rows"].values()) for c in cards)


def test_make_demo_shows_three_machines_with_live_values_within_30_s(
        browser: Any, tmp_path: Path) -> None:
    demo = DemoProcess(tmp_path / "demo-data")  # `make demo`, on a port of the test's own
    try:
        deadline = demo.started + LIVE_WITHIN
        page = open_page(browser, demo.url + "/", deadline)
        cards = wait_for(page, three_live, deadline, "three machines delivering good values")

        assert [c["name"] for c in cards] == list(MACHINES.values())  # in the config's order
        assert {c["label"] for c in cards} == {"delivering"}
        assert page.inner_text("#summary").split() == [
            "3", "machines", "3", "delivering", "0", "need", "attention", "0", "no", "data"]
        press, lathe, comp = cards
        assert [(s["id"], s["conn"]) for s in press["sources"]] == [
            ("io", "connected"), ("energy", "connected")]
        assert [s["id"] for s in lathe["sources"]] == ["cnc"]
        assert [s["id"] for s in comp["sources"]] == ["sensors"]
        rows = press["rows"]
        assert rows["firmware"]["value"] == FIRMWARE
        assert rows["light_green"]["value"] in ("true", "false")
        assert rows["motor_current"]["unit"] == "A" and 0 <= number(rows["motor_current"]["value"]) <= 50
        assert 220 <= number(rows["voltage_l1"]["value"]) <= 240
        assert lathe["rows"]["mode"]["value"] in ("AUTO", "READY", "STOP")
        assert comp["rows"]["vibration"]["unit"] == "mm/s"
        assert 4 <= number(comp["rows"]["pressure"]["value"]) <= 9
        assert seconds(comp["rows"]["vibration"]["age"]) < 10  # the sensor publishes every second

        # the page follows the ledger: the values it shows are the API's
        api = {(t["machine"], t["tag"]): t["latest"] for t in
               httpx.get(demo.url + "/api/v1/tags", timeout=5).json()["items"]}
        assert lathe["rows"]["program"]["value"] == api[("lathe03", "program")]["value"]

        # live: the press strokes while running, and the page shows the counter moving
        parts = number(rows["parts_total"]["value"])
        wait_for(page, lambda cs: number(cs[0]["rows"]["parts_total"]["value"]) > parts,
                 deadline, "the part counter rising")
        # sparklines of the history so far (2 s buckets while it is short) of analogue values
        wait_for(page, lambda cs: all(cs[i]["rows"][t]["spark"] >= 6 for i, t in (
            (0, "motor_current"), (0, "voltage_l1"), (1, "spindle_temperature"),
            (2, "vibration"))), time.monotonic() + 30, "sparklines of 6 points or more")
        assert page.errors == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
    finally:
        assert demo.stop() == 0


class SimThread:
    """The demo's press simulator (two Modbus servers) in an event loop of its own thread."""

    def __init__(self) -> None:
        self.io_port, self.meter_port = free_port(), free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = PressSimulator(self.io_port, self.meter_port, random.Random(3))
        self.call(self.sim.start())
        self.task = asyncio.run_coroutine_threadsafe(self.sim.run(), self.loop)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.task.cancel()
        self.call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


FAULTY = """\
ledger: {{url: "sqlite:///{data}/ledger.db"}}
spool: {{path: "{data}/spool.db"}}
api: {{port: {api}, api_keys: ["{key}"]}}
machines:
  - id: press07
    name: Press 07
    sources:
      - {{id: io, protocol: modbus, host: 127.0.0.1, port: {io}, interval: 500ms, tags: [
          {{name: motor_current, register: input, address: 0, type: uint16, scale: 0.005, unit: A}},
          {{name: light_green, register: discrete, address: 0}}]}}
      - {{id: energy, protocol: modbus, host: 127.0.0.1, port: {dead}, interval: 500ms,
          timeout: 300ms, tags: [{{name: voltage_l1, register: input, address: 0, type: float32, unit: V}}]}}
  - id: oven02
    name: Oven 02
    sources:
      - {{id: plc, protocol: modbus, host: 127.0.0.1, port: {dead}, interval: 500ms, timeout: 300ms,
          tags: [{{name: zone1_temperature, register: holding, address: 0, unit: degC}}]}}
"""


@pytest.fixture
def faulty_collector(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`collector run` on a press with one live and one dead source, an oven that is dead,
    and an API key; yields (url, key)."""
    sims = SimThread()
    key = "k-" + "".join(random.choice("abcdef0123456789") for _ in range(16))
    api = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(FAULTY.format(data=tmp_path, api=api, key=key, io=sims.io_port,
                                    dead=free_port()))
    log = (tmp_path / "collector.log").open("wb")
    process = subprocess.Popen([*collector_command(), "run", "-c", str(config)], stdout=log,
                               stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        yield f"http://127.0.0.1:{api}", key
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        sims.close()


def test_some_down_no_data_errors_and_the_api_key(browser: Any,
                                                  faulty_collector: tuple[str, str]) -> None:
    url, key = faulty_collector
    until = time.monotonic() + 30
    page = open_page(browser, url + "/", until)
    assert httpx.get(url + "/", timeout=5).status_code == 200  # the page needs no key ...
    assert httpx.get(url + "/api/v1/machines", timeout=5).status_code == 401  # ... the API does

    # without a key: the form, and the sources' health (public) already colours the cards
    page.wait_for_selector("#keyform:not([hidden])", timeout=15_000)
    cards = wait_for(page, lambda cs: [c["status"] for c in cs] == ["partial", "nodata"],
                     until, "health-only cards")
    assert all(c["rows"] == {} for c in cards)
    page.fill("#keyinput", "not-the-key")
    page.click("#keyform button[type=submit]")
    page.wait_for_selector("#keyerror:not([hidden])", timeout=15_000)
    assert "the API refused this key" in page.inner_text("#keyerror")

    page.fill("#keyinput", key)
    page.click("#keyform button[type=submit]")

    def shown(cs: list[dict[str, Any]]) -> bool:
        return (len(cs) == 2 and cs[0]["rows"].get("motor_current", {}).get("quality") == "good"
                and all(s["error"] for s in cs[0]["sources"][1:] + cs[1]["sources"]))

    press, oven = wait_for(page, shown, until, "values, states and errors")
    assert page.is_hidden("#keyform")
    assert (press["name"], press["status"], press["label"]) == (
        "Press 07", "partial", "1 of 2 sources down")
    assert (oven["name"], oven["status"], oven["label"]) == ("Oven 02", "nodata", "no data")
    io, energy = press["sources"]
    assert (io["conn"], io["error"]) == ("connected", None)
    assert energy["conn"] == "not connected" and energy["connected"] == "false"
    assert re.search(r"refused|connect", energy["error"], re.I), energy["error"]
    assert oven["sources"][0]["conn"] == "not connected"
    assert press["rows"]["light_green"]["value"] in ("true", "false")
    assert press["rows"]["voltage_l1"]["quality"] in ("none", "bad")  # never read
    assert page.inner_text("#summary").split()[:10] == [
        "2", "machines", "0", "delivering", "1", "need", "attention", "1", "no", "data"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-faults.png"), full_page=True)

    # the browser keeps the key: a reload goes straight to the values
    page.reload()
    wait_for(page, shown, time.monotonic() + 15, "values after a reload")
    assert page.is_hidden("#keyform")
    assert page.errors == []


BLIND = """\
ledger: {{url: "sqlite:///{data}/ledger.db"}}
spool: {{path: "{data}/spool.db"}}
api: {{port: {api}}}
machines:
  - id: press07
    name: Press 07
    sources:
      - {{id: io, protocol: modbus, host: 127.0.0.1, port: {io}, interval: 300ms, tags: [
          {{name: motor_current, register: input, address: 0, type: uint16, scale: 0.005, unit: A}},
          {{name: spare_counter, register: holding, address: 400, type: uint16}}]}}
"""


def test_a_tag_that_never_reads_turns_its_machine_amber_with_the_tag_and_why(
        browser: Any, tmp_path: Path) -> None:
    sims = SimThread()
    api = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(BLIND.format(data=tmp_path, api=api, io=sims.io_port))
    log = (tmp_path / "collector.log").open("wb")
    process = subprocess.Popen([*collector_command(), "run", "-c", str(config)], stdout=log,
                               stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        until = time.monotonic() + 30
        page = open_page(browser, f"http://127.0.0.1:{api}/", until)
        (press,) = wait_for(page, lambda cs: len(cs) == 1 and cs[0]["status"] == "partial"
                            and cs[0]["rows"].get("motor_current", {}).get("quality") == "good",
                            until, "the press amber with a live motor current")
        assert press["label"] == "1 tag bad"
        assert press["sources"][0]["conn"] == "connected"
        why = page.inner_text('.tag[data-tag="spare_counter"] .why')
        assert why.startswith("bad: unit 1 answered exception 2 (illegal data address) "
                              "reading holding 400 (tags spare_counter)")
        assert page.get_attribute('.tag[data-tag="spare_counter"]', "data-problem") == "bad"
        assert page.is_hidden('.tag[data-tag="motor_current"] .why')
        assert page.inner_text("#summary").split()[:7] == [
            "1", "machine", "0", "delivering", "1", "need", "attention"]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "status-page-tag-bad.png"), full_page=True)
        assert page.errors == []
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
        sims.close()


PRESS = """\
ledger: {{url: "sqlite:///{data}/ledger.db"}}
spool: {{path: "{data}/spool.db"}}
pipeline: {{flush_interval: 100ms}}
api: {{port: {api}, api_keys: ["{read}"], write_keys: ["{write}"]}}
plant:
  timezone: {tz}
  shifts:
    - {{name: early, start: "06:00", end: "14:00"}}
    - {{name: late, start: "14:00", end: "22:00"}}
    - {{name: night, start: "22:00", end: "06:00"}}
  downtime_reasons:
    - {{code: tool_change, label: Tool change, planned: true}}
    - {{code: no_material, label: No material}}
machines:
  - id: press07
    name: Press 07
    sources:
      - {{id: io, protocol: modbus, host: 127.0.0.1, port: {io}, interval: 200ms, tags: [
          {{name: motor_current, register: holding, address: 0, type: uint16, scale: 0.1, unit: A}},
          {{name: parts_total, register: holding, address: 2, type: uint32}},
          {{name: rejects, register: holding, address: 4, type: uint16}}]}}
    production:
      states:
        - {{state: running, when: "motor_current > 9"}}
        - {{state: idle, when: "motor_current > 2"}}
        - {{state: stopped, when: "true"}}
      counters: {{total: parts_total, reject: rejects}}
      ideal_cycle: 1s
      micro_stop: 1s
  - id: oven02
    name: Oven 02
    sources:
      - {{id: plc, protocol: modbus, host: 127.0.0.1, port: {io}, interval: 500ms, tags: [
          {{name: zone1_temperature, register: holding, address: 10, unit: degC}}]}}
"""
CURRENT = {"running": 200, "idle": 50, "stopped": 0}  # raw motor_current: 20.0 A, 5.0 A, 0 A


def afternoon_zone() -> str:
    """A fixed-offset zone in which it is now 15:xx: the early shift is over, the late shift
    runs for more than an hour, the night shift has not started and midnight is far away."""
    hours = (15 - datetime.now(UTC).hour + 12) % 24 - 12  # -12 .. 11
    return "Etc/GMT" if hours == 0 else f"Etc/GMT{-hours:+d}"  # POSIX signs: Etc/GMT-8 is UTC+8


class PressPlant:
    """A press played by a pymodbus server (values the test sets), an oven without production
    rules on the same server, and `collector run` with a plant calendar, reasons and keys."""

    def __init__(self, folder: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.device = Device([sim_device(1)])
        self.call(self.device.start())
        self.parts, self.rejects = 50_000, 7
        self.set_state("running")
        self.set_counters(self.parts, self.rejects)
        self.read_key = "r-" + "".join(random.choice("abcdef0123456789") for _ in range(16))
        self.write_key = "w-" + "".join(random.choice("abcdef0123456789") for _ in range(16))
        self.tz = afternoon_zone()
        api = free_port()
        self.url = f"http://127.0.0.1:{api}"
        config = folder / "collector.yaml"
        config.write_text(PRESS.format(data=folder, api=api, read=self.read_key,
                                       write=self.write_key, tz=self.tz, io=self.device.port))
        self.log = (folder / "collector.log").open("wb")
        self.process = subprocess.Popen([*collector_command(), "run", "-c", str(config)],
                                        stdout=self.log, stderr=subprocess.STDOUT, cwd=folder)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def set_state(self, state: str) -> None:
        self.call(self.device.set("holding", 0, [CURRENT[state]]))

    def set_counters(self, parts: int, rejects: int) -> None:
        self.call(self.device.set("holding", 2, [parts >> 16, parts & 0xFFFF, rejects]))

    def make(self, parts: int, rejects: int) -> None:
        self.parts += parts
        self.rejects += rejects
        self.set_counters(self.parts, self.rejects)

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.url + path, params=params,
                             headers={"X-API-Key": self.read_key}, timeout=5)
        response.raise_for_status()
        return response.json()

    def wait(self, check: Callable[[], Any], within: float, what: str) -> Any:
        """Poll `check()` until truthy; fail naming `what` with the collector's log."""
        until = time.monotonic() + within
        problem: Exception | None = None
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise AssertionError(f"the collector exited: {self.output()[-3000:]}")
            try:
                result = check()
                if result:
                    return result
            except (httpx.HTTPError, KeyError, IndexError) as exc:
                problem = exc
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {within} s (last problem: {problem})\n"
                             f"{self.output()[-3000:]}")

    def state(self) -> str | None:
        return {m["id"]: m["state"] for m in self.get("/api/v1/machines")["items"]}["press07"]

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
        self.call(self.device.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def press_plant(tmp_path: Path) -> Iterator[PressPlant]:
    plant = PressPlant(tmp_path)
    try:
        plant.wait(lambda: plant.state() == "running", 30, "the press running")
        yield plant
    finally:
        plant.close()


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", css)[:3])


def test_card_shows_state_in_colour_and_word_parts_oee_and_state_bar(
        browser: Any, press_plant: PressPlant) -> None:
    plant = press_plant
    plant.make(12, 2)  # parts made while running: 12, of which 2 rejects
    plant.wait(lambda: plant.get("/api/v1/ledger/daily")["totals"][0]["total"] == 12, 20,
               "12 parts in the ledger")
    page = open_page(browser, plant.url + "/", time.monotonic() + 20)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    opened = time.monotonic()
    page.wait_for_selector("#keyform:not([hidden])", timeout=15_000)
    page.fill("#keyinput", plant.read_key)
    page.click("#keyform button[type=submit]")

    def production_shown(cs: list[dict[str, Any]]) -> bool:
        return (len(cs) == 2 and cs[0]["production"] is not None
                and cs[0]["production"]["parts"] == "12" and cs[0]["production"]["bar"] != [])

    press, oven = wait_for(page, production_shown, time.monotonic() + 20, "parts and state bar")
    assert press["state"]["word"] == "running"
    assert rgb(press["state"]["colour"]) == (47, 191, 113)  # green, and the word says it too
    prod = press["production"]
    assert prod["partsSub"] == "this shift 12 · 2 rejects today"
    assert prod["oeeLabel"] == "OEE late shift"  # 15:xx plant time
    late = {r["shift"]: r for r in plant.get("/api/v1/ledger/daily")["items"]}["late"]
    shown_oee = float(prod["oee"].rstrip(" %"))
    assert late["oee"] is not None and abs(shown_oee - late["oee"] * 100) < 0.15
    assert prod["head"].startswith("last 8 h · running since ")
    # the bar: offline before the collector started (grey), then running to now (green)
    bar = prod["bar"]
    assert [s["state"] for s in bar][-1] == "running" and "offline" in [s["state"] for s in bar]
    assert abs(sum(s["width"] for s in bar) - 100) < 0.5
    assert rgb(bar[-1]["colour"]) == (47, 191, 113)
    offline = next(s for s in bar if s["state"] == "offline")
    assert offline["width"] > 90  # nearly all of the last 8 h: the collector is minutes old
    assert (oven["state"], oven["production"]) == (None, None)  # no production rules

    # the press stops: the card says so within a few seconds, in red with a hatched bar end
    plant.set_state("stopped")
    press, _ = wait_for(page, lambda cs: cs[0]["state"]["word"] == "stopped"
                        and cs[0]["production"]["bar"][-1]["state"] == "stopped",
                        time.monotonic() + 10, "the stop")
    assert rgb(press["state"]["colour"]) == (229, 72, 77)
    assert "repeating-linear-gradient" in press["production"]["bar"][-1]["image"]
    assert press["production"]["head"].startswith("last 8 h · stopped since ")
    # gently: the day's ledger every 30 s for all machines, states once a minute per machine
    # with rules (the bar's end follows /machines in between)
    minutes = (time.monotonic() - opened) / 60
    assert 1 <= sum("/ledger/daily" in u for u in asked) <= 1 + 2 * minutes
    assert 1 <= sum("/machines/press07/states" in u for u in asked) <= 1 + minutes
    assert not [u for u in asked if "/machines/oven02/" in u]
    assert page.errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-production.png"), full_page=True)


def test_page_and_assets_need_no_key_and_nothing_else_is_served(tmp_path: Path) -> None:
    # in a thread of its own: Playwright's sync API keeps an event loop busy in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _page_and_assets(tmp_path)).result(60)


async def _page_and_assets(tmp_path: Path) -> None:
    from api.app import create_app
    from collector.config import parse_config
    from collector.runtime import Runtime

    config = parse_config(f"ledger: {{url: 'sqlite:///{tmp_path}/ledger.db'}}\n"
                          "api: {api_keys: [k]}\nmachines: []\n", base_dir=str(tmp_path))
    # a box name no config accepts, to see it escaped in the page
    app = create_app(Runtime(config.model_copy(update={"box": "<line2>"})))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://box") as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<title>&lt;line2&gt; · machine status</title>" in page.text  # the box, escaped
        assert page.headers["cache-control"] == "no-cache"
        assert "cdn" not in page.text.lower() and "https://" not in page.text  # works offline
        for name, kind in (("status.js", "text/javascript"), ("draw.js", "text/javascript"),
                           ("status.css", "text/css"), ("favicon.svg", "image/svg+xml")):
            asset = await client.get(f"/static/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
            assert f"/static/{name}" in page.text
        ledger = await client.get("/ledger")
        assert ledger.status_code == 200 and ledger.headers["cache-control"] == "no-cache"
        assert "<title>&lt;line2&gt; · daily production ledger</title>" in ledger.text
        assert "cdn" not in ledger.text.lower() and "https://" not in ledger.text
        assert 'href="/ledger"' in page.text and 'href="/"' in ledger.text  # linked both ways
        for name, kind in (("ledger.js", "text/javascript"), ("ledger.css", "text/css"),
                           ("draw.js", "text/javascript"), ("status.css", "text/css")):
            asset = await client.get(f"/static/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
            assert f"/static/{name}" in ledger.text
            assert "https://" not in asset.text  # nothing from the internet
        assert (await client.get("/static/ledger.html")).status_code == 404
        missing = await client.get("/static/index.html")
        assert missing.status_code == 404
        assert missing.json()["detail"] == "no file 'index.html' here; the status page is at /"
        for path in ("/static/..%2fstatus.py", "/static/%2e%2e/app.py", "/static/../api/app.py"):
            assert (await client.get(path)).status_code == 404
