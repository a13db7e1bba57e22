"""The deployment files against real peers: every SQL query of the Grafana dashboard runs on a
real ledger in PostgreSQL and gives the numbers a supervisor would read off the panels; the
compose file's database roles let Grafana read the ledger and nothing more; the broker config
admits the collector's login and nobody else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from collector.ledger import Ledger, MachineInfo, SeriesInfo
from collector.model import Quality, Reading
from tests.kit.ports import free_port
from tests.kit.postgres import PG_URL, ThrowawayPostgres
from tests.kit.programs import need_program

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NOW_S = int(time.time())
START_S, END_S = NOW_S - 600, NOW_S + 60  # the dashboard's time range


def _set_clock() -> None:
    """The dashboard's queries compare with now(): take "now" when the test starts, not when
    the module was imported (a long suite would age the data)."""
    global NOW_S, START_S, END_S
    NOW_S = int(time.time())
    START_S, END_S = NOW_S - 600, NOW_S + 60
INTERVAL_MS = 60_000  # Grafana's $__interval for the range at the panel's width
M = 60_000_000  # one minute in µs


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana/dashboards/collector.json").read_text())


def panel_sql(title: str) -> str:
    found = [p["targets"][0]["rawSql"] for p in dashboard()["panels"] if p["title"] == title]
    assert len(found) == 1, title
    return found[0]


def variable_sql(name: str) -> str:
    return next(v["query"] for v in dashboard()["templating"]["list"] if v["name"] == name)


def grafana(sql: str, variables: Mapping[str, Sequence[str]]) -> str:
    """The SQL as Grafana sends it: macros expanded, multi-value variables as quoted lists."""
    sql = (sql.replace("$__unixEpochFrom()", str(START_S))
              .replace("$__unixEpochTo()", str(END_S))
              .replace("$__interval_ms", str(INTERVAL_MS)))
    for name, values in variables.items():
        quoted = ",".join("'" + v.replace("'", "''") + "'" for v in values)
        sql = re.sub(r"\$\{" + name + r"\}|\$" + name + r"\b", quoted, sql)
    leftover = re.findall(r"\$\{?\w+", sql)
    assert not leftover, f"unexpanded Grafana variables or macros: {leftover}"
    return sql


def build_readings(now_us: int) -> list[Reading]:
    """Ten minutes of a press delivering every 10 s, and a compressor that went down."""
    out = []
    for i in range(60):
        ts = now_us - (60 - i) * 10_000_000
        out.append(Reading("press07", "motor_current", ts, float(i), Quality.GOOD))
        out.append(Reading("press07", "running", ts, i % 2 == 0, Quality.GOOD))
        if i % 6 == 0:
            out.append(Reading("press07", "mode", ts, "AUTO" if i < 54 else "SETUP", Quality.GOOD))
        if i < 30:
            out.append(Reading("comp01", "vibration", ts, 2.0 + i / 100, Quality.GOOD))
            out.append(Reading("comp01", "temperature", ts, 60.0, Quality.GOOD))
    down = now_us - 29 * 10_000_000  # the sensor stopped answering: one bad reading per tag
    out.append(Reading("comp01", "vibration", down, None, Quality.BAD))
    out.append(Reading("comp01", "temperature", down, None, Quality.BAD))
    return out


@pytest.fixture
async def ledger_db(pg_schema: str) -> AsyncIterator[tuple[asyncpg.Connection, list[Reading]]]:
    """A ledger written by the collector's own writer, and a plain connection to query it."""
    _set_clock()
    ledger = Ledger(PG_URL, schema=pg_schema)
    await ledger.open()
    await ledger.sync_config(
        [MachineInfo("press07", "Press 07", "stamping", "line2"),
         MachineInfo("comp01", "Compressor 01", "utilities")],
        [SeriesInfo("press07", "motor_current", "A", "io", "modbus"),
         SeriesInfo("press07", "running", None, "io", "modbus"),
         SeriesInfo("press07", "mode", None, "hmi", "opcua"),
         SeriesInfo("comp01", "vibration", "mm/s", "sensors", "mqtt"),
         SeriesInfo("comp01", "temperature", "degC", "sensors", "mqtt")],
    )
    readings = build_readings(NOW_S * 1_000_000)
    await ledger.write(readings)
    await ledger.close()
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": pg_schema})
    yield conn, readings
    await conn.close()


ALL = {"machine": ["comp01", "press07"],
       "tag": ["mode", "motor_current", "running", "temperature", "vibration"]}


@pytest.mark.postgres
async def test_every_dashboard_query_runs_and_returns_rows(ledger_db: Any) -> None:
    conn, _ = ledger_db
    queries = [v["query"] for v in dashboard()["templating"]["list"]]
    queries += [t["rawSql"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 9
    for sql in queries:
        rows = await conn.fetch(grafana(sql, ALL))
        assert rows, sql


@pytest.mark.postgres
async def test_variables_list_machines_and_their_tags(ledger_db: Any) -> None:
    conn, _ = ledger_db
    machines = await conn.fetch(grafana(variable_sql("machine"), {}))
    assert [(r["__value"], r["__text"]) for r in machines] == [
        ("comp01", "Compressor 01"), ("press07", "Press 07")]
    tags = await conn.fetch(grafana(variable_sql("tag"), {"machine": ["press07"]}))
    assert [r["tag"] for r in tags] == ["mode", "motor_current", "running"]


@pytest.mark.postgres
async def test_trend_averages_each_tag_per_interval(ledger_db: Any) -> None:
    conn, readings = ledger_db
    rows = await conn.fetch(grafana(panel_sql("${machine:text}"), {**ALL, "machine": ["press07"]}))
    got = {(r["time"].timestamp(), r["metric"]): r["value"] for r in rows}
    assert len(got) >= 20
    sums: dict[tuple[float, str], list[float]] = defaultdict(list)
    for r in readings:
        if r.machine == "press07" and r.tag != "mode":  # text tags are not drawn
            metric = "motor_current [A]" if r.tag == "motor_current" else r.tag
            sums[((r.ts // M) * 60, metric)].append(float(r.value))
    assert got == pytest.approx({k: sum(v) / len(v) for k, v in sums.items()})


@pytest.mark.postgres
async def test_latest_values_table(ledger_db: Any) -> None:
    conn, readings = ledger_db
    rows = await conn.fetch(grafana(panel_sql("Latest value of every tag"), ALL))
    table = {(r["machine"], r["tag"]): r for r in rows}
    assert table[("press07", "motor_current")]["value"] == "59.000"
    assert table[("press07", "motor_current")]["unit"] == "A"
    assert table[("press07", "running")]["value"] == "false"  # i = 59 is odd
    assert table[("press07", "mode")]["value"] == "SETUP"
    assert table[("press07", "mode")]["quality"] == "good"
    assert table[("comp01", "vibration")]["quality"] == "bad"
    assert table[("comp01", "vibration")]["value"] is None
    assert 280 <= table[("comp01", "vibration")]["age"] <= 320
    assert table[("press07", "motor_current")]["time"].timestamp() == max(
        r.ts for r in readings if r.tag == "motor_current") / 1e6


@pytest.mark.postgres
async def test_source_health_and_overview(ledger_db: Any) -> None:
    conn, readings = ledger_db
    rows = await conn.fetch(grafana(panel_sql("Sources"), ALL))
    status = {(r["machine"], r["source"]): (r["status"], r["tags"], r["good"]) for r in rows}
    assert status == {("comp01", "sensors"): ("down", 2, 0),
                      ("press07", "hmi"): ("delivering", 1, 1),
                      ("press07", "io"): ("delivering", 2, 2)}
    stat = await conn.fetchrow(grafana(panel_sql("Machines delivering"), ALL))
    assert (stat["delivering"], stat["machines"]) == (1, 2)
    bad = await conn.fetchrow(grafana(panel_sql("Readings not good"), ALL))
    assert float(bad["not good"]) == pytest.approx(100 * 2 / len(readings))


@pytest.mark.postgres
async def test_ingest_and_bad_rates_count_every_reading(ledger_db: Any) -> None:
    conn, readings = ledger_db
    rows = await conn.fetch(grafana(panel_sql("Ingest rate (readings per minute), by machine"), ALL))
    per_machine: dict[str, float] = defaultdict(float)
    for r in rows:
        per_machine[r["metric"]] += float(r["value"])  # per-minute rate × 1-minute buckets
    assert per_machine == {m: sum(1 for r in readings if r.machine == m) for m in ("comp01", "press07")}
    assert all(r["time"].timestamp() % 60 == 0 for r in rows)

    recent = [r for r in readings if r.ts >= (NOW_S - 300) * 1_000_000]
    stat = await conn.fetchrow(grafana(panel_sql("Ingest, last 5 minutes"), ALL))
    assert float(stat["readings/min"]) == pytest.approx(len(recent) / 5, abs=1)

    bad = await conn.fetch(grafana(panel_sql("Readings not good per minute, by source"), ALL))
    assert [(r["metric"], float(r["value"])) for r in bad] == [("comp01/sensors", 2.0)]


@pytest.mark.postgres
def test_compose_roles_let_grafana_read_but_not_write(throwaway_pg: ThrowawayPostgres) -> None:
    """Runs deploy/postgres/init/10-roles.sh as the postgres image would, on a private cluster;
    the collector creates its ledger as `collector`, and `grafana` can run the dashboard."""
    import asyncio

    _set_clock()
    pg = throwaway_pg
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(pg.port),
           "POSTGRES_USER": "postgres", "POSTGRES_DB": "plant",
           "LEDGER_PASSWORD": "ledger-pw", "GRAFANA_DB_PASSWORD": "grafana-pw"}
    subprocess.run([need_program("psql", "postgresql"), "-U", "postgres", "-d", "postgres", "-c",
                    "CREATE DATABASE plant"],
                   env=env, check=True, capture_output=True, timeout=60)
    script = subprocess.run(["sh", str(DEPLOY / "postgres/init/10-roles.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert script.returncode == 0, script.stderr
    asyncio.run(_ledger_as_collector_read_as_grafana(pg.port))


async def _ledger_as_collector_read_as_grafana(port: int) -> None:
    ledger = Ledger(f"postgresql://collector:ledger-pw@127.0.0.1:{port}/plant")
    await ledger.open()
    await ledger.write(build_readings(NOW_S * 1_000_000))
    await ledger.close()
    conn = await asyncpg.connect(f"postgresql://grafana:grafana-pw@127.0.0.1:{port}/plant")
    try:
        rows = await conn.fetch(grafana(panel_sql("Sources"), ALL))
        assert {r["machine"] for r in rows} == {"comp01", "press07"}
        assert await conn.fetchval("SHOW statement_timeout") == "30s"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM readings")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE sneaky (x int)")
    finally:
        await conn.close()


def test_broker_config_admits_the_collector_and_nobody_else() -> None:
    """The real broker runs deploy/mosquitto/mosquitto.conf (listener and paths moved to a
    private port and folder) with a password file written the way start.sh writes it."""
    import paho.mqtt.client as mqtt

    folder = Path(tempfile.mkdtemp(prefix="collector-mqtt-"))
    port = free_port()
    conf = (DEPLOY / "mosquitto/mosquitto.conf").read_text()
    assert "listener 1883 0.0.0.0" in conf and "allow_anonymous false" in conf
    conf = (conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
                .replace("/mosquitto/data/passwd", f"{folder}/passwd")
                .replace("/mosquitto/data/", f"{folder}/"))
    (folder / "mosquitto.conf").write_text(conf)
    (folder / "passwd").touch(mode=0o600)
    subprocess.run([need_program("mosquitto_passwd", "mosquitto"), "-b", str(folder / "passwd"),
                    "collector", "pw"], check=True)
    if os.geteuid() == 0:  # the broker drops to its own user, as in the container
        for path in (folder, folder / "passwd", folder / "mosquitto.conf"):
            shutil.chown(path, "mosquitto", "mosquitto")
    broker = subprocess.Popen([need_program("mosquitto", "mosquitto"), "-c", str(folder / "mosquitto.conf")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def connect(username: str | None, password: str | None) -> Any:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if username:
            client.username_pw_set(username, password)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.connect("127.0.0.1", port)
                break
            except OSError:
                if time.monotonic() > deadline or broker.poll() is not None:
                    raise
                time.sleep(0.1)
        result: list[Any] = []
        client.on_connect = lambda c, u, f, reason, p: result.append(reason)
        while not result and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        client.disconnect()
        return result[0]

    try:
        assert connect("collector", "pw").value == 0
        assert connect(None, None).is_failure
        assert connect("collector", "wrong").is_failure
    finally:
        broker.terminate()
        broker.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
