"""Health, machines, latest values and tags through httpx against the real app, on SQLite and
PostgreSQL; API keys on and off; CORS and request limits."""

from __future__ import annotations

import httpx

from collector.ledger import Ledger
from collector.model import BAD, GOOD, UNCERTAIN, Reading
from tests.kit.api import T0, S, detail, make_env
from tests.kit.ports import free_port

PROTECTED = [
    "/api/v1/machines", "/api/v1/machines/press07", "/api/v1/machines/press07/latest",
    "/api/v1/tags", "/api/v1/readings?machine=press07", "/api/v1/readings/aggregate?machine=press07",
]


async def seed(ledger: Ledger) -> None:
    await ledger.write([Reading("press07", "motor_current", T0 + i * S, 10.0 + i) for i in range(5)]
                       + [Reading("press07", "door_open", T0 + 2 * S, True),
                          Reading("press07", "door_open", T0 + 3 * S, False, UNCERTAIN),
                          Reading("press07", "mode", T0, "AUTO"),
                          Reading("press07", "mode", T0 + 4 * S + 123_456, None, BAD),
                          Reading("lathe1", "spindle", T0, 800.0)])


async def test_health_is_open_and_reports_sources(api_env) -> None:
    _, client = api_env
    r = await client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["ledger"]["ok"] is True
    assert [(s["machine"], s["source"], s["protocol"], s["connected"]) for s in body["sources"]] == [
        ("press07", "io", "modbus", True)]


async def test_machines_list_one_and_unknown(api_env) -> None:
    rt, client = api_env
    await seed(rt.ledger)
    items = (await client.get("/api/v1/machines")).json()["items"]
    assert [m["id"] for m in items] == ["lathe1", "press07"]
    press = (await client.get("/api/v1/machines/press07")).json()
    assert press == {"id": "press07", "name": "Press 07", "area": "stamping", "line": "line2",
                     "state": None,
                     "tags": ["motor_current", "door_open", "idle_tag", "mode"]}
    assert (await client.get("/api/v1/machines/lathe1")).json()["tags"] == ["spindle"]
    r = await client.get("/api/v1/machines/press99")
    assert r.status_code == 404 and "press99" in detail(r)
    rt.health[0].connected = False  # without production rules a machine has no state
    assert (await client.get("/api/v1/machines/press07")).json()["state"] is None


async def test_latest_values_of_a_machine(api_env) -> None:
    rt, client = api_env
    await seed(rt.ledger)
    items = (await client.get("/api/v1/machines/press07/latest")).json()["items"]
    assert items == [
        {"tag": "motor_current", "ts": "2023-11-14T22:13:24.000Z", "value": 14.0,
         "quality": "good", "unit": "A"},
        {"tag": "door_open", "ts": "2023-11-14T22:13:23.000Z", "value": False,
         "quality": "uncertain", "unit": None},
        {"tag": "mode", "ts": "2023-11-14T22:13:24.123Z", "value": None, "quality": "bad",
         "unit": None},
    ]
    # a newer reading replaces the value
    await rt.ledger.write([Reading("press07", "motor_current", T0 + 60 * S, 99.5, GOOD)])
    items = (await client.get("/api/v1/machines/press07/latest")).json()["items"]
    assert items[0]["value"] == 99.5 and items[0]["ts"] == "2023-11-14T22:14:20.000Z"
    r = await client.get("/api/v1/machines/nope/latest")
    assert r.status_code == 404 and "'nope'" in detail(r)
    # a configured machine without readings is known, just empty
    assert (await client.get("/api/v1/machines/lathe1/latest")).status_code == 200


async def test_tags_with_unit_source_and_latest(api_env) -> None:
    rt, client = api_env
    await seed(rt.ledger)
    items = (await client.get("/api/v1/tags", params={"machine": "press07"})).json()["items"]
    by_tag = {t["tag"]: t for t in items}
    assert list(by_tag) == ["motor_current", "door_open", "idle_tag", "mode"]
    assert by_tag["motor_current"] == {
        "machine": "press07", "tag": "motor_current", "unit": "A", "source": "io",
        "protocol": "modbus", "kind": "number", "description": "main drive current",
        "latest": {"ts": "2023-11-14T22:13:24.000Z", "value": 14.0, "quality": "good"}}
    assert by_tag["idle_tag"]["latest"] is None and by_tag["idle_tag"]["unit"] == "rpm"
    assert by_tag["door_open"]["kind"] == "bool" and by_tag["door_open"]["latest"]["value"] is False
    assert by_tag["mode"]["source"] is None and by_tag["mode"]["kind"] == "text"
    assert by_tag["mode"]["latest"] == {"ts": "2023-11-14T22:13:24.123Z", "value": None,
                                        "quality": "bad"}
    assert by_tag["door_open"]["latest"]["quality"] == "uncertain"
    # a text with a comma, a quote and an umlaut as the newest value
    await rt.ledger.write([Reading("press07", "mode", T0 + 9 * S, 'SETUP, "Einrichten" ü')])
    items = (await client.get("/api/v1/tags", params={"machine": "press07"})).json()["items"]
    assert {t["tag"]: t for t in items}["mode"]["latest"]["value"] == 'SETUP, "Einrichten" ü'
    everything = (await client.get("/api/v1/tags")).json()["items"]
    assert {(t["machine"], t["tag"]) for t in everything} == {
        ("press07", t) for t in by_tag} | {("lathe1", "spindle")}
    r = await client.get("/api/v1/tags", params={"machine": "mill3"})
    assert r.status_code == 404 and "'mill3'" in detail(r)


async def test_api_keys_when_configured(ledger: Ledger) -> None:
    _, client = await make_env(ledger, keys=("s3cret-key", "other-key"))
    async with client:
        assert (await client.get("/api/v1/health")).status_code == 200
        for path in PROTECTED:
            r = await client.get(path)
            assert r.status_code == 401, path
            assert "API key" in detail(r) and r.headers["www-authenticate"] == "Bearer"
            for headers in ({"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                            {"Authorization": "Basic czNjcmV0LWtleQ=="}, {"X-API-Key": ""}):
                assert (await client.get(path, headers=headers)).status_code == 401, (path, headers)
            for headers in ({"X-API-Key": "s3cret-key"}, {"Authorization": "Bearer other-key"},
                            {"authorization": "bearer s3cret-key"}):
                assert (await client.get(path, headers=headers)).status_code == 200, (path, headers)
        # the docs stay readable without a key
        assert (await client.get("/openapi.json")).status_code == 200


async def test_no_keys_means_open(api_env) -> None:
    _, client = api_env
    for path in PROTECTED:
        assert (await client.get(path)).status_code == 200, path


async def test_cors_for_configured_origins(ledger: Ledger) -> None:
    _, client = await make_env(ledger, origins=("https://grafana.plant.example",))
    async with client:
        r = await client.get("/api/v1/machines", headers={"Origin": "https://grafana.plant.example"})
        assert r.headers["access-control-allow-origin"] == "https://grafana.plant.example"
        r = await client.options("/api/v1/readings", headers={
            "Origin": "https://grafana.plant.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key"})
        assert r.status_code == 200 and "x-api-key" in r.headers["access-control-allow-headers"].lower()
        r = await client.get("/api/v1/machines", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_request_limits(api_env) -> None:
    _, client = api_env
    r = await client.get("/api/v1/readings", params={"machine": "press07", "tag": "x" * 20_000})
    assert r.status_code == 414 and "query string" in detail(r)
    r = await client.request("GET", "/api/v1/machines", content=b"x" * 100_000)
    assert r.status_code == 413


async def test_openapi_documents_every_endpoint_with_examples(api_env) -> None:
    _, client = api_env
    doc = (await client.get("/openapi.json")).json()
    assert set(doc["paths"]) >= {
        "/api/v1/health", "/api/v1/machines", "/api/v1/machines/{machine_id}",
        "/api/v1/machines/{machine_id}/latest", "/api/v1/tags", "/api/v1/readings",
        "/api/v1/readings/aggregate"}
    schemas = doc["components"]["schemas"]
    for name in ("ReadingItem", "AggregateItem", "TagInfo", "LatestValue", "Machine", "Error"):
        assert schemas[name].get("examples"), name
    readings = doc["paths"]["/api/v1/readings"]["get"]
    assert {"400", "401", "404"} <= set(readings["responses"])
    assert "text/csv" in readings["responses"]["200"]["content"]
    assert (await client.get("/docs")).status_code == 200


async def test_unreachable_ledger_is_503_not_500(ledger: Ledger) -> None:
    rt, client = await make_env(ledger)
    rt.ledger = Ledger(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    app = client._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with client, httpx.AsyncClient(transport=transport, base_url="http://t") as plain:
        r = await plain.get("/api/v1/machines/press07/latest")
        assert r.status_code == 503 and "ledger could not answer" in detail(r)
    await rt.ledger.close()


async def test_latest_values_follow_every_change(api_env, ledger_target) -> None:
    """A machine of this config is answered from a cache that every commit and every
    retention pass of this process invalidates; a machine of another collector box writing
    to the same ledger is read afresh each time."""
    rt, client = api_env
    url = "/api/v1/machines/press07/latest"
    for k in range(3):
        await rt.ledger.write([Reading("press07", "motor_current", T0 + k * S, float(k))])
        assert [i["value"] for i in (await client.get(url)).json()["items"]] == [float(k)]
        assert [i["value"] for i in (await client.get(url)).json()["items"]] == [float(k)]
    await rt.ledger.delete_older_than(T0 + 10 * S)
    assert (await client.get(url)).json()["items"] == []
    url_, schema = ledger_target
    other = Ledger(url_, schema=schema, box="box-b")
    await other.open()
    try:
        for k in range(3):
            await other.write([Reading("mill3", "spindle", T0 + k * S, 100.0 + k)])
            items = (await client.get("/api/v1/machines/mill3/latest")).json()["items"]
            assert [(i["tag"], i["value"]) for i in items] == [("spindle", 100.0 + k)]
    finally:
        await other.close()
