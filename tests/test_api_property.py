"""Property-based API tests: no input gives a server error, and every answer fits the OpenAPI
document.

Schemathesis generates requests (valid and invalid) from `/openapi.json` against the app served
by uvicorn on a free loopback port over a seeded ledger, on SQLite and PostgreSQL; a second
test feeds hand-made strategies for our own formats (times, buckets, zones, cursors).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.schemas import AggregateList, Error, ReadingPage
from collector.ledger import Ledger
from collector.model import BAD, Reading
from tests.kit.api import T0, S, make_env
from tests.kit.ports import free_port

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


async def seed(ledger: Ledger) -> None:
    await ledger.write([Reading("press07", "motor_current", T0 + i * S, float(i)) for i in range(600)]
                       + [Reading("press07", "door_open", T0 + i * 7 * S, i % 2 == 0)
                          for i in range(60)]
                       + [Reading("press07", "mode", T0 + 5 * S, "AUTO"),
                          Reading("press07", "mode", T0 + 9 * S, None, BAD)])


class LiveApi:
    """The app under uvicorn in a thread with its own event loop and ledger."""

    def __init__(self, url: str, schema: str | None):
        self.url, self.schema = url, schema
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self.error = exc

    async def _main(self) -> None:
        ledger = Ledger(self.url, schema=self.schema)
        await ledger.open()
        rt, client = await make_env(ledger)
        await client.aclose()
        await seed(ledger)
        self.server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1",
                                                    port=self.port, log_level="warning",
                                                    lifespan="off", access_log=False))
        try:
            await self.server.serve()
        finally:
            await ledger.close()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.error:
                raise self.error
            try:
                if httpx.get(self.base + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("the API server did not start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def live_api(ledger_target: tuple[str, str | None]) -> Any:
    api = LiveApi(*ledger_target)
    api.start()
    yield api
    api.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(live_api: LiveApi) -> None:
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(live_api.base + "/openapi.json")
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/v1/"):
            continue  # /metrics has its own tests
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
            if "machine" in {p.name for p in operation.query} and mode == GenerationMode.POSITIVE:
                strategies.append(operation.as_strategy(generation_mode=mode,
                                                        query={"machine": "press07"}))
            if "machine_id" in {p.name for p in operation.path_parameters}:
                strategies.append(operation.as_strategy(generation_mode=mode,
                                                        path_parameters={"machine_id": "press07"}))
    seen: dict[int, int] = {}

    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def check(case: Any) -> None:
        response = case.call(base_url=live_api.base, timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)

    check()
    assert not {code for code in seen if code >= 500}, seen
    assert seen.get(200, 0) > 20 and seen.get(400, 0) > 20, seen


TIMES = st.one_of(
    st.integers(min_value=-10**17, max_value=10**17).map(str),
    st.integers(min_value=T0 // 1000 - 10**6, max_value=T0 // 1000 + 10**6).map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2023-11-14T22:13:20Z", "2023-11-14T23:20:00+01:00", "now", "", " ",
                     "1e12", "2023-02-30T00:00:00Z", "9999-12-31T23:59:59+00:00"]),
    st.text(max_size=30),
)
BUCKETS = st.one_of(st.sampled_from(["1s", "30s", "1m", "5m", "1h", "1d", "0s", "2d", "500ms",
                                     "1000ms", "10", "m", "-1m", "1M"]),
                    st.from_regex(r"\A[0-9]{1,12}(ms|s|m|h|d)\Z"), st.text(max_size=10))
ZONES = st.one_of(st.none(), st.timezone_keys(), st.text(max_size=20),
                  st.sampled_from(["UTC", "Europe/Berlin", "../etc/passwd", "Etc/GMT+14"]))
TAGS = st.lists(st.sampled_from(["motor_current", "door_open", "mode", "idle_tag", "nope", "",
                                 "motor_current,mode", ","]), max_size=4)


def test_our_formats_never_break_the_api(ledger_target: tuple[str, str | None]) -> None:
    loop = asyncio.new_event_loop()
    ledger = Ledger(ledger_target[0], schema=ledger_target[1])
    loop.run_until_complete(ledger.open())
    _, client = loop.run_until_complete(make_env(ledger))
    loop.run_until_complete(seed(ledger))
    statuses: list[int] = []
    near = st.integers(T0 // 1000 - 3600_000, T0 // 1000 + 3600_000)
    plausible = st.fixed_dictionaries({"machine": st.just("press07"), "start": near.map(str)}, optional={
        "tag": st.lists(st.sampled_from(["motor_current", "door_open", "mode"]), max_size=3),
        "end": st.one_of(near.map(str), near.map(
            lambda v: datetime.fromtimestamp(v / 1000, UTC).isoformat())),
        "limit": st.integers(1, 2000), "format": st.sampled_from(["json", "csv"]),
        "bucket": st.sampled_from(["1s", "7s", "1m", "5m", "1h", "1d"]),
        "tz": st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"])})
    fuzzy = st.fixed_dictionaries({}, optional={
        "machine": st.sampled_from(["press07", "lathe1", "nope", "", "PRESS07", "press\x0007", "x" * 70]),
        "tag": TAGS, "start": TIMES, "end": TIMES,
        "limit": st.one_of(st.integers(-5, 200_000).map(str), st.text(max_size=5)),
        "cursor": st.one_of(st.text(max_size=40),
                            st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode())),
        "format": st.sampled_from(["json", "csv", "xml"]),
        "bucket": BUCKETS, "tz": ZONES})
    edge = st.sampled_from(["253402300799999", "253401436799999", "-62135596800000",
                            "-62134732800000", "0", "86400000", "9999-12-31T23:59:59.999-12:00",
                            "0001-01-01T00:00:00+14:00"])
    edges = st.fixed_dictionaries({"machine": st.just("press07"), "start": edge, "end": edge,
                                   "bucket": st.sampled_from(["1h", "1d"]), "tz": ZONES,
                                   "format": st.sampled_from(["json", "csv"])})
    requests = st.one_of(plausible, fuzzy, edges)

    async def one(path: str, params: dict[str, Any]) -> None:
        r = await client.get(path, params=params)
        statuses.append(r.status_code)
        assert r.status_code in (200, 400, 404), (path, params, r.text)
        if r.status_code != 200:
            Error.model_validate(r.json())
        elif params.get("format") == "csv":
            assert r.text.startswith("machine,tag,")
        elif path.endswith("aggregate"):
            AggregateList.model_validate(r.json())
        else:
            ReadingPage.model_validate(r.json())

    @settings(max_examples=500, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/api/v1/readings", "/api/v1/readings/aggregate"]),
           params=requests)
    def check(path: str, params: dict[str, Any]) -> None:
        loop.run_until_complete(one(path, params))

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(ledger.close())
        loop.close()
    assert statuses.count(200) > 10 and statuses.count(400) > 10
