"""The API's boundary: every GET route answers what its `response_model` says, byte for byte,
and every runtime handed to the API fits `api.boundary.RuntimeView` (checked by mypy).

The app runs over the real `Runtime` (not started: no device behind it) and a SQLite ledger
seeded with readings of every kind (numbers, bools, texts, bad readings) and production data
(states, part counts, a downtime with a reason). A JSON answer must parse as its route's model
(`model_validate_json`), dump back to the same JSON (no key the model lacks, no value it would
change) and hold every field of the model (but those a route leaves out when null). A CSV
answer's header names the fields of the model's items.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
import sys
import typing
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from api.app import create_app
from api.docs import FILES as DOCS_FILES
from api.production import LEDGER_COLUMNS, ZH_COLUMNS
from api.status import ASSETS
from collector.config import CollectorConfig, parse_config
from collector.derive.report import ProductionReport
from collector.ledger import Ledger, MachineInfo
from collector.ledger.production import ProductionBatch
from collector.model import BAD, Reading, SourceHealth, us_from_datetime
from collector.runtime import Runtime, configured_series

if TYPE_CHECKING:
    from api.boundary import RuntimeView

ROOT = Path(__file__).resolve().parent.parent
S = 1_000_000
MIN = 60 * S
# the early shift of 2026-11-23 in Shanghai (UTC+8)
SHIFT_START = us_from_datetime(datetime.fromisoformat("2026-11-23T00:00:00+00:00"))
DAY = "2026-11-23"
WINDOW = {"start": "2026-11-23T00:00:00Z", "end": "2026-11-23T08:00:00Z"}
READINGS = {"machine": "press07", "start": "2026-11-23T00:00:00Z",
            "end": "2026-11-23T00:20:00Z"}

CONFIG = """
api: {{enabled: false, workers: 0}}
ledger: {{url: "sqlite:///{db}"}}
spool: {{path: "{spool}"}}
plant:
  timezone: Asia/Shanghai
  shifts:
    - {{name: early, start: "08:00", end: "16:00"}}
    - {{name: night, start: "20:00", end: "08:00"}}
  downtime_reasons:
    - {{code: tool_change, label: Tool change, planned: true}}
    - {{code: no_material, label: No material}}
machines:
  - id: press07
    name: Press 07
    area: stamping
    line: line2
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        tags:
          - {{name: current, address: 0, type: float32, unit: A,
              description: main drive current}}
          - {{name: parts, address: 2, type: uint32}}
          - {{name: door_open, register: coil, address: 0, type: bool}}
    production:
      states:
        - {{state: running, when: "current > 8"}}
        - {{state: stopped, when: "true"}}
      counters: {{total: parts}}
      ideal_cycle: 2s
      micro_stop: 2m
  - id: lathe1
    sources: []
"""


@dataclass
class Case:
    """One request of a route and what its answer must hold beyond its model."""

    url: str
    params: dict[str, Any] = field(default_factory=dict)
    nonempty: tuple[str, ...] = ("items",)  # keys that must hold a non-empty list
    csv_skips: tuple[str, ...] = ()  # fields of the items that CSV leaves out
    csv_labels: dict[str, str] | None = None  # column titles by field, when translated


def _csv(params: dict[str, Any]) -> dict[str, Any]:
    return {**params, "format": "csv"}


# every GET route of the app, by its path, with the requests that show its answers
CASES: dict[str, list[Case]] = {
    "/api/v1/health": [Case("/api/v1/health", nonempty=("sources",))],
    "/api/v1/machines": [Case("/api/v1/machines")],
    "/api/v1/machines/{machine_id}": [Case("/api/v1/machines/press07", nonempty=("tags",))],
    "/api/v1/machines/{machine_id}/latest": [Case("/api/v1/machines/press07/latest")],
    "/api/v1/tags": [Case("/api/v1/tags"), Case("/api/v1/tags", {"machine": "press07"})],
    "/api/v1/readings": [
        Case("/api/v1/readings", {**READINGS, "limit": 100_000}),
        Case("/api/v1/readings", {**READINGS, "tag": "current", "limit": 10}),  # a next cursor
        Case("/api/v1/readings", _csv({**READINGS, "limit": 100_000})),
    ],
    "/api/v1/readings/aggregate": [
        Case("/api/v1/readings/aggregate", {**READINGS, "bucket": "1m"}),
        Case("/api/v1/readings/aggregate", {**READINGS, "bucket": "1h", "tz": "Asia/Shanghai"}),
        Case("/api/v1/readings/aggregate", _csv({**READINGS, "bucket": "1m"})),
    ],
    "/api/v1/machines/{machine_id}/states": [
        Case("/api/v1/machines/press07/states", WINDOW),
        Case("/api/v1/machines/press07/states", {**WINDOW, "codes": "umh"}),
    ],
    "/api/v1/machines/{machine_id}/production": [
        Case("/api/v1/machines/press07/production", WINDOW, nonempty=()),
        *[Case("/api/v1/machines/press07/production", {**WINDOW, "bucket": bucket})
          for bucket in ("1h", "shift", "day")],
    ],
    "/api/v1/machines/{machine_id}/oee": [
        Case("/api/v1/machines/press07/oee", WINDOW, nonempty=())],
    "/api/v1/machines/{machine_id}/downtimes": [
        Case("/api/v1/machines/press07/downtimes", WINDOW, nonempty=("items", "reasons"))],
    "/api/v1/ledger/daily": [
        Case("/api/v1/ledger/daily", {"date": DAY}, nonempty=("items", "totals", "shifts")),
        Case("/api/v1/ledger/daily", {"date": DAY, "lang": "zh-CN"}),
        Case("/api/v1/ledger/daily", _csv({"date": DAY}), csv_skips=("name", "start", "end")),
        Case("/api/v1/ledger/daily", _csv({"date": DAY, "lang": "zh-CN"}),
             csv_skips=("name", "start", "end"), csv_labels=ZH_COLUMNS),
    ],
    "/api/v1/lines/{line}/oee": [Case("/api/v1/lines/line2/oee", WINDOW, nonempty=("machines",))],
    "/api/v1/connectivity": [Case("/api/v1/connectivity", WINDOW, nonempty=("machines",))],
    # no response model: each answer must be what its media type says
    "/metrics": [Case("/metrics")],
    "/": [Case("/")],
    "/ledger": [Case("/ledger")],
    "/static/{name}": [Case(f"/static/{name}") for name in ASSETS],
    "/openapi.json": [Case("/openapi.json")],
    "/docs": [Case("/docs")],
    "/redoc": [Case("/redoc")],
    "/static/vendor/{name}": [Case(f"/static/vendor/{name}") for name in DOCS_FILES],
}


def get_routes(app: FastAPI) -> dict[str, Any]:
    """Every route of `app` that answers GET, by path (FastAPI >= 0.160 keeps an included
    router's routes behind one entry of `app.routes`; `iter_route_contexts` opens them)."""
    opened = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(opened(app.routes) if opened is not None else app.routes)
    return {r.path: r for r in routes if "GET" in (r.methods or ())}


def response_model(route: Any) -> type[BaseModel] | None:
    model = getattr(route, "response_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


# --- the app over a seeded ledger -------------------------------------------------------------
def config_for(tmp: Path) -> CollectorConfig:
    return parse_config(CONFIG.format(db=tmp / "ledger.db", spool=tmp / "spool.db"),
                        base_dir=str(tmp))


async def seed(config: CollectorConfig) -> None:
    """Readings of every kind and a shift of production data, with a downtime's reason."""
    ledger = Ledger(config.ledger.url)
    await ledger.open()
    try:
        await ledger.sync_config(
            [MachineInfo(m.id, m.name, m.area, m.line) for m in config.machines],
            configured_series(config))
        t0 = SHIFT_START
        await ledger.write(
            [Reading("press07", "current", t0 + i * S, 9.5 + (i % 7) / 3) for i in range(600)]
            + [Reading("press07", "current", t0 + 600 * S, None, BAD)]
            + [Reading("press07", "parts", t0 + i * 10 * S, 3000 + i) for i in range(60)]
            + [Reading("press07", "door_open", t0 + i * 7 * S, i % 2 == 0) for i in range(60)]
            + [Reading("press07", "mode", t0 + 5 * S, "AUTO, \"ready\""),
               Reading("press07", "mode", t0 + 9 * S, None, BAD),
               Reading("press07", "mode", t0 + 20 * S, "MANUAL")])
        batch = ProductionBatch(intervals=[
            ("press07", t0, t0 + 120 * MIN, "running"),
            ("press07", t0 + 120 * MIN, t0 + 150 * MIN, "stopped"),
            ("press07", t0 + 150 * MIN, t0 + 480 * MIN, "running")])
        batch.counts = [("press07", t0 + 10 * MIN, 3000, 0, 0),
                        ("press07", t0 + 300 * MIN, 4000, 0, 0)]
        await ledger.production.commit(batch)
        report = ProductionReport(config, ledger.production)
        _, found = await report.downtimes("press07", t0, t0 + 480 * MIN)
        await report.set_reason(found[0].id, "no_material", "coil late")
    finally:
        await ledger.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> CollectorConfig:
    config = config_for(tmp_path_factory.mktemp("boundary"))
    asyncio.run(seed(config))
    return config


@pytest.fixture
async def served(seeded: CollectorConfig) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app over the real runtime of the seeded ledger, with its clock a day later."""
    runtime = Runtime(seeded)
    runtime.health.append(SourceHealth("press07", "io", "modbus", connected=True))
    await runtime.ledger.open()
    app = create_app(runtime)
    later = SHIFT_START + 86_400 * S
    app.state.production.clock = lambda: later
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://box") as client:
            yield app, client
    finally:
        await runtime.ledger.close()


# --- holding an answer to its model -----------------------------------------------------------
def absent_fields(model: BaseModel, nulls_left_out: bool, where: str = "") -> Iterator[str]:
    """The fields of `model` (and of the models in it) that its JSON did not hold; a field
    left out is allowed where the route leaves out nulls."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name not in model.model_fields_set and not (nulls_left_out and value is None):
            yield f"{where}{name}"
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, BaseModel):
                yield from absent_fields(item, nulls_left_out, f"{where}{name}[{i}].")


def difference(given: Any, modelled: Any, where: str = "") -> str:
    """Where the body (`given`) first differs from what its model makes of it."""
    if isinstance(given, dict) and isinstance(modelled, dict):
        for key in [*given, *(k for k in modelled if k not in given)]:
            if key not in modelled:
                return f"{where}{key} (not in the model)"
            if key not in given:
                return f"{where}{key} (not in the body)"
            if given[key] != modelled[key]:
                return difference(given[key], modelled[key], f"{where}{key}.")
    if isinstance(given, list) and isinstance(modelled, list) and len(given) == len(modelled):
        for i, (a, b) in enumerate(zip(given, modelled, strict=True)):
            if a != b:
                return difference(a, b, f"{where.rstrip('.')}[{i}].")
    return f"{where.rstrip('.')}: {given!r} in the body, {modelled!r} by the model"


def item_model(model: type[BaseModel]) -> type[BaseModel]:
    """The model of the `items` of a list answer."""
    (item,) = typing.get_args(model.model_fields["items"].annotation)
    assert isinstance(item, type) and issubclass(item, BaseModel)
    return item


def check_json(route: Any, model: type[BaseModel], case: Case, body: bytes) -> None:
    parsed = model.model_validate_json(body)  # a missing or mistyped field fails here
    given = json.loads(body)
    again = parsed.model_dump(mode="json", exclude_unset=True)
    assert again == given, (f"{case.url}: the body and {model.__name__} differ at "
                            f"{difference(given, again)}")
    absent = list(absent_fields(parsed, bool(route.response_model_exclude_none)))
    assert not absent, f"{case.url}: {model.__name__} fields missing from the body: {absent}"
    for key in case.nonempty:
        assert given[key], f"{case.url}: {key} is empty, so nothing in it was checked"


def check_csv(model: type[BaseModel], case: Case, text: str) -> None:
    header, *rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    columns = [f for f in item_model(model).model_fields if f not in case.csv_skips]
    labels = case.csv_labels or {}
    assert header == [labels.get(c, c) for c in columns], case.url
    assert rows and all(len(row) == len(header) for row in rows), case.url


def check_other(case: Case, response: httpx.Response) -> None:
    """An answer without a response model is what its media type says."""
    kind = response.headers["content-type"].split(";")[0]
    if case.url == "/metrics":
        families = {f.name for f in text_string_to_metric_families(response.text)}
        assert {"collector_pipeline_queue_readings", "collector_ledger_write_seconds",
                "collector_production_up"} <= families
    elif case.url == "/openapi.json":
        assert set(json.loads(response.content)["paths"]) >= {
            p for p in CASES if p.startswith("/api/")}
    elif case.url.startswith("/static/vendor/"):
        assert kind == DOCS_FILES[case.url.removeprefix("/static/vendor/")] and response.content
    elif case.url.startswith("/static/"):
        assert kind == ASSETS[case.url.removeprefix("/static/")] and response.content
    else:
        assert kind == "text/html" and "<html" in response.text.lower(), case.url


async def test_every_get_route_has_cases(served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, _ = served
    uncovered = set(get_routes(app)) - set(CASES)
    assert not uncovered, f"GET routes without a case in CASES: {sorted(uncovered)}"


@pytest.mark.parametrize("path", list(CASES))
async def test_route_answers_hold_to_its_model(
        path: str, served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = served
    route = get_routes(app).get(path)
    if route is None:
        pytest.skip(f"the app has no route {path} (any more): its case can go")
    model = response_model(route)
    for case in CASES[path]:
        response = await client.get(case.url, params=case.params)
        assert response.status_code == 200, (case.url, case.params, response.text[:300])
        kind = response.headers["content-type"].split(";")[0]
        if model is None:
            check_other(case, response)
        elif case.params.get("format") == "csv":
            assert kind == "text/csv", case.url
            check_csv(model, case, response.text)
        else:
            assert kind == "application/json", case.url
            check_json(route, model, case, response.content)


async def test_values_of_every_kind_were_checked(served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """The answers above held numbers, bools, texts and nulls, and a page with a next cursor."""
    _, client = served
    for url, params in (("/api/v1/readings", {**READINGS, "limit": 100_000}),
                        ("/api/v1/machines/press07/latest", {}), ("/api/v1/tags", {})):
        items = (await client.get(url, params=params)).json()["items"]
        values = [(i.get("latest") or {}).get("value") if "latest" in i else i["value"]
                  for i in items]
        assert {type(v) for v in values} >= {int, bool, str}, url  # parts: exact integers
    page = (await client.get("/api/v1/readings", params={**READINGS, "limit": 1_000})).json()
    assert None in {i["value"] for i in page["items"]}
    small = (await client.get("/api/v1/readings", params={**READINGS, "tag": "current",
                                                          "limit": 10})).json()
    assert small["next"] and len(small["items"]) == 10
    downtimes = (await client.get("/api/v1/machines/press07/downtimes", params=WINDOW)).json()
    assert downtimes["items"][0]["reason_label"] == "No material"
    daily = (await client.get("/api/v1/ledger/daily", params=_csv({"date": DAY}))).text
    assert daily.removeprefix("\ufeff").split("\r\n")[0].split(",") == list(LEDGER_COLUMNS)


# --- every runtime handed to the API fits its boundary (mypy) ---------------------------------
def _the_collectors_runtime_fits(config: CollectorConfig) -> RuntimeView:
    return Runtime(config)  # checked by mypy in the test below


BOUNDARY = re.compile(r"\b(RuntimeView|LedgerView|PipelineView|DerivationView)\b")


def api_callers() -> list[Path]:
    """The test and bench modules that hand a runtime to `create_app` or `ApiServer`."""
    return sorted(p for folder in ("tests", "bench") for p in (ROOT / folder).rglob("*.py")
                  if p != Path(__file__) and re.search(r"\b(create_app|ApiServer)\(",
                                                       p.read_text(encoding="utf-8")))


def test_every_runtime_given_to_the_api_fits_its_boundary() -> None:
    """mypy on the modules that build an app or an API server: each runtime (the collector's
    own, and every stand-in of a test or a bench) offers what `RuntimeView` asks for."""
    callers = api_callers()
    assert any("kit" in p.parts or p.name == "test_api_fixtures.py" for p in callers), callers
    files = [str(p.relative_to(ROOT)) for p in [Path(__file__), *callers]]
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: errors, perhaps unrelated ones
    misfits: list[str] = []
    at = None  # where the last error about the boundary was
    for line in done.stdout.splitlines():  # such errors, and the notes that follow them
        place, kind, _ = line.partition(": error: ")
        if kind:
            at = place if BOUNDARY.search(line) else None
            if at:
                misfits.append(line)
        elif at and line.startswith(at + ": note: "):
            misfits.append(line)
    assert not misfits, "\n".join(misfits)
