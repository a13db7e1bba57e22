"""The status page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

`make demo` and the page shows three machines with live values within 30 s; a collector with
a dead source, a dead machine and API keys shows "some down", "no data", the errors, and asks
for the key. Screenshots go to test-artifacts/.
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
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.demo.press import FIRMWARE, PressSimulator

from .conftest import need_program
from .test_demo import LIVE_WITHIN, MACHINES, ROOT, DemoProcess, collector_command, free_port

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
            "3", "machines", "3", "delivering", "0", "some", "down", "0", "no", "data"]
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
        "2", "machines", "0", "delivering", "1", "some", "down", "1", "no", "data"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-faults.png"), full_page=True)

    # the browser keeps the key: a reload goes straight to the values
    page.reload()
    wait_for(page, shown, time.monotonic() + 15, "values after a reload")
    assert page.is_hidden("#keyform")
    assert page.errors == []


def test_page_and_assets_need_no_key_and_nothing_else_is_served() -> None:
    # in a thread of its own: Playwright's sync API keeps an event loop busy in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _page_and_assets()).result(60)


async def _page_and_assets() -> None:
    from types import SimpleNamespace

    from api.app import create_app

    config = SimpleNamespace(box="<line2>", api=SimpleNamespace(api_keys=["k"], cors_origins=[]))
    app = create_app(SimpleNamespace(config=config))
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
        missing = await client.get("/static/index.html")
        assert missing.status_code == 404
        assert missing.json()["detail"] == "no file 'index.html' here; the status page is at /"
        for path in ("/static/..%2fstatus.py", "/static/%2e%2e/app.py", "/static/../api/app.py"):
            assert (await client.get(path)).status_code == 404
