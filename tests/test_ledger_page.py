"""The daily ledger page `/ledger` in a real headless Chromium, on `collector run` reading a
press played by a pymodbus server: a day renders with one table per shift whose state times
add up to the shift's elapsed length, a supervisor sets a downtime's reason through the page
(a read key is refused with the API's words), the CSVs download with their BOM and columns,
and the print layout is A4 landscape without controls. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta
from typing import Any

from .test_status_page import ARTIFACTS, PressPlant, browser, open_page, press_plant

__all__ = ["browser", "press_plant"]  # the fixtures, shared with the status page's tests

# The ledger as the page shows it; every figure cell carries the API's value in data-value.
READ_LEDGER = """() => {
  const table = (t) => Object.fromEntries([...t.querySelectorAll('tbody tr')].map(r => [
    r.dataset.machine, Object.fromEntries([...r.querySelectorAll('td')].map(td => [
      td.dataset.key, {text: td.textContent, value: td.dataset.value}]))]));
  return {
    day: document.getElementById('day').textContent,
    date: document.getElementById('date').value,
    next: document.getElementById('next').disabled,
    shifts: [...document.querySelectorAll('section.shift')].map(s => ({
      name: s.dataset.shift, title: s.querySelector('h3').textContent,
      rows: table(s.querySelector('table'))})),
    totals: document.querySelector('#totals table') ? table(document.querySelector('#totals table')) : {},
    downtimes: Object.fromEntries([...document.querySelectorAll('section.machine-downtimes')].map(
      s => [s.dataset.machine, {head: s.querySelector('h4').textContent,
        rows: [...s.querySelectorAll('tbody tr')].map(r => ({id: r.dataset.downtime,
          from: r.querySelector('.from').textContent, states: r.querySelector('.states').textContent,
          reason: r.querySelector('select').value, comment: r.querySelector('input').value,
          feedback: r.querySelector('.feedback').textContent}))}]))};
}"""
STATES = ("running_s", "idle_s", "stopped_s", "offline_s")
EN_COLUMNS = ("date,machine,shift,planned_s,running_s,idle_s,stopped_s,offline_s,downtimes,"
              "micro_stops,longest_downtime_s,total,good,reject,availability,performance,"
              "quality,oee,energy_kwh")
ZH_START = "日期,设备,班次,计划时间(秒),运行(秒),待机(秒),停机(秒),离线(秒)"
SHIFT_S = 8 * 3600


def ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read(page: Any, check: Any, within: float, what: str) -> dict[str, Any]:
    """Read the page until `check(ledger)` holds; fail with what it showed."""
    shown: dict[str, Any] = {}
    until = time.monotonic() + within
    while time.monotonic() < until:
        shown = page.evaluate(READ_LEDGER)
        if check(shown):
            return shown
        page.wait_for_timeout(200)
    raise AssertionError(f"{what}: not shown in time; the page showed {shown}; "
                         f"page errors {page.errors}")


def test_ledger_page_renders_the_day_sets_a_reason_and_downloads_the_csv(
        browser: Any, press_plant: PressPlant) -> None:
    plant = press_plant
    plant.make(4, 1)  # 4 parts, 1 of them a reject
    time.sleep(1.0)
    plant.set_state("stopped")  # a stop of 3 s; micro_stop is 1 s, so it is a downtime
    stopped = time.monotonic()
    time.sleep(3.0)
    plant.set_state("running")
    stopped = time.monotonic() - stopped  # the device's stop (read every 200 ms)
    plant.wait(lambda: plant.state() == "running", 10, "the press running again")
    day = plant.get("/api/v1/ledger/daily")
    span = {"start": day["shifts"][0]["start"], "end": day["shifts"][-1]["end"]}

    def the_stop() -> dict[str, Any] | None:
        items = plant.get("/api/v1/machines/press07/downtimes", **span)["items"]
        return next((d for d in items if d["states"] == ["stopped"] and not d["ongoing"]), None)

    stop = plant.wait(the_stop, 15, "the stop as a downtime")
    assert abs(stop["duration_s"] - stopped) < 1 and stop["reason"] is None
    plant.wait(lambda: plant.get("/api/v1/ledger/daily")["totals"][0]["total"] == 4, 15,
               "4 parts in the ledger")

    # the page asks for the key (api.api_keys is set); first a read key
    page = open_page(browser, plant.url + "/ledger", time.monotonic() + 20)
    page.wait_for_selector("#keyform:not([hidden])", timeout=15_000)
    page.fill("#keyinput", plant.read_key)
    before = time.time()
    page.click("#keyform button[type=submit]")
    shown = read(page, lambda s: len(s["shifts"]) == 3 and s["downtimes"].get("press07"), 15,
                 "the day's shifts and downtimes")
    after = time.time()

    today = day["date"]
    assert shown["date"] == today and shown["next"] is True  # today in plant time; no tomorrow
    assert plant.tz in shown["day"]
    assert shown["day"].startswith(date.fromisoformat(today).strftime("%A"))
    assert [s["name"] for s in shown["shifts"]] == ["early", "late", "night"]
    assert all(list(s["rows"]) == ["press07"] for s in shown["shifts"])  # the oven has no rules
    early, late, night = (s["rows"]["press07"] for s in shown["shifts"])
    assert [s["title"].split(" · ")[0] for s in shown["shifts"]] == [
        "Early shift 06:00–14:00", "Late shift 14:00–22:00", "Night shift 22:00–06:00"]

    # state times add up to each shift's elapsed length (no breaks: all of it planned)
    starts = {s["name"]: ms(s["start"]) for s in day["shifts"]}
    for name, row in (("early", early), ("late", late), ("night", night)):
        spent = sum(float(row[k]["value"]) for k in STATES)
        assert abs(spent - float(row["planned_s"]["value"])) < 0.01, (name, row)
    assert sum(float(early[k]["value"]) for k in STATES) == SHIFT_S
    assert early["offline_s"]["value"] == str(SHIFT_S) and early["offline_s"]["text"] == "8:00"
    late_spent = sum(float(late[k]["value"]) for k in STATES)
    assert before - starts["late"] - 2 <= late_spent <= after - starts["late"] + 2
    assert late_spent > 3600  # 15:xx plant time
    assert sum(float(night[k]["value"]) for k in STATES) == 0  # not started
    # what the press did, as the page shows it
    assert (late["total"]["text"], late["good"]["text"], late["reject"]["text"]) == ("4", "3", "1")
    assert float(late["stopped_s"]["value"]) == stop["duration_s"]
    assert late["quality"]["text"] == "75.0 %"
    assert early["availability"]["text"] == "0.0 %" and early["performance"]["text"] == "—"
    # and each figure is the API's: the finished early shift whole, the running one's counts
    rows = {r["shift"]: r for r in plant.get("/api/v1/ledger/daily", date=today)["items"]}
    for key, cell in early.items():
        api = rows["early"][key]
        assert (None if cell["value"] == "" else float(cell["value"])) == api, (key, cell, api)
    for key in ("downtimes", "micro_stops", "total", "good", "reject"):
        assert late[key]["text"] == str(rows["late"][key]), key
    totals = shown["totals"]["press07"]
    assert totals["total"]["text"] == "4"
    assert abs(float(totals["planned_s"]["value"]) - SHIFT_S - late_spent) < 0.01

    # the downtimes of the day, with the stop
    press = shown["downtimes"]["press07"]
    listed = plant.get("/api/v1/machines/press07/downtimes", **span)
    assert [r["id"] for r in press["rows"]] == [d["id"] for d in listed["items"]]
    def plural(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    assert press["head"] == (f"Press 07 · {plural(len(listed['items']), 'downtime')} · "
                             f"{plural(listed['micro_stops'], 'micro-stop')}")
    row = next(r for r in press["rows"] if r["id"] == stop["id"])
    assert row["states"] == "stopped" and row["reason"] == "" and row["comment"] == ""
    sel = f'tr[data-downtime="{stop["id"]}"]'
    page.select_option(f"{sel} select", "no_material")
    page.fill(f"{sel} input.comment", "coil late")
    page.click(f"{sel} button.save")
    page.wait_for_selector(f'{sel} .feedback[data-kind="error"]', timeout=10_000)
    assert page.inner_text(f"{sel} .feedback") == (
        "Not saved: changing data needs a key listed in api.write_keys (header X-API-Key or "
        "Authorization: Bearer); read keys cannot write")
    assert the_stop()["reason"] is None

    # the supervisor's key: the reason being edited survives the reload, then saves
    page.click("#keybtn")
    page.fill("#keyinput", plant.write_key)
    page.click("#keyform button[type=submit]")
    page.wait_for_selector("#keyform", state="hidden")
    assert page.input_value(f"{sel} select") == "no_material"
    page.click(f"{sel} button.save")
    page.wait_for_selector(f'{sel} .feedback[data-kind="ok"]', timeout=10_000)
    assert re.fullmatch(r"Saved 1[56]:\d\d", page.inner_text(f"{sel} .feedback"))  # plant time
    stored = the_stop()
    assert (stored["reason"], stored["reason_label"], stored["comment"], stored["planned"]) == (
        "no_material", "No material", "coil late", False)
    assert page.evaluate("localStorage.getItem('collector.apiKey')") == plant.write_key
    assert plant.write_key not in page.url and plant.read_key not in page.url
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ledger-page.png"), full_page=True)

    # the CSVs, fetched with the key and saved from the browser
    with page.expect_download() as got:
        page.click("#csv-en")
    csv_en = got.value
    assert csv_en.suggested_filename == f"ledger-{today}.csv"
    data = open(csv_en.path(), "rb").read()
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the file as UTF-8
    lines = data[3:].decode("utf-8").splitlines()
    assert lines[0] == EN_COLUMNS
    assert [line.split(",")[2] for line in lines[1:]] == ["early", "late", "night", "total"]
    late_csv = dict(zip(EN_COLUMNS.split(","), lines[2].split(","), strict=True))
    assert (late_csv["date"], late_csv["machine"], late_csv["total"], late_csv["reject"]) == (
        today, "press07", "4", "1")
    with page.expect_download() as got:
        page.click("#csv-zh")
    assert got.value.suggested_filename == f"ledger-{today}-zh-CN.csv"
    data = open(got.value.path(), "rb").read()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data[3:].decode("utf-8").splitlines()
    assert lines[0].startswith(ZH_START) and lines[-1].split(",")[2] == "合计"

    # printed: A4 landscape, the date and time zone on top, no controls, the reason as text
    page.emulate_media(media="print")
    assert page.is_hidden("#datebar") and page.is_hidden("#csv-en") and page.is_hidden(f"{sel} select")
    assert page.is_visible("#day") and page.is_visible("section.shift table")
    assert page.inner_text(f"{sel} .reason-cell") == "No material"
    assert page.evaluate("getComputedStyle(document.querySelector('section.shift tbody tr'))"
                         ".breakInside") == "avoid"
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    width, height = (float(x) for x in re.search(
        rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)", pdf).groups())
    assert (round(width), round(height)) == (842, 595)  # A4 landscape, in points
    page.screenshot(path=str(ARTIFACTS / "ledger-page-print.png"), full_page=True)
    page.emulate_media(media="screen")

    # the day before: all offline (nothing was observed), and back
    yesterday = (date.fromisoformat(today) - timedelta(days=1)).isoformat()
    page.click("#prev")
    shown = read(page, lambda s: s["date"] == yesterday and s["shifts"]
                 and s["shifts"][0]["rows"]["press07"]["total"]["value"] == "0", 15, "yesterday")
    assert page.url.endswith(f"/ledger?date={yesterday}") and shown["next"] is False
    for s in shown["shifts"]:
        row = s["rows"]["press07"]
        assert row["offline_s"]["value"] == row["planned_s"]["value"] == str(SHIFT_S)
    page.click("#next")
    read(page, lambda s: s["date"] == today and s["next"], 15, "today again")
    assert page.errors == []
