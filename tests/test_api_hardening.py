"""The HTTP side of a running collector under abuse: security headers on every answer, pages
that work under their Content-Security-Policy in a real Chromium, a 503 and one log line (no
traceback) per outage while the PostgreSQL ledger is down, and a flood of malformed requests
folded into one log line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit.ports import free_port
from tests.kit.postgres import ThrowawayPostgres
from tests.kit.programs import need_program

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


class Collector:
    """`collector run` in a process of its own; `stop()` returns what it wrote to stderr."""

    def __init__(self, tmp_path: Path, ledger_url: str | None = None):
        self.port = free_port()
        self.config = tmp_path / "collector.yaml"
        self.config.write_text(
            f"ledger:\n  url: {ledger_url or f'sqlite:///{tmp_path}/ledger.db'}\n"
            f"spool:\n  path: {tmp_path}/spool.db\napi:\n  port: {self.port}\n  workers: 0\n"
            "machines:\n  - id: press07\n    name: Press 07\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "run", "-c", str(self.config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the collector did not come up: {self.stop()}")
            time.sleep(0.2)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return err


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    running = Collector(tmp_path)
    yield running
    running.stop()


PAGES_AND_ANSWERS = ["/", "/ledger", "/static/status.js", "/static/status.css",
                     "/api/v1/health", "/api/v1/machines", "/api/v1/machines/nope",
                     "/metrics", "/openapi.json", "/nowhere"]


def test_every_answer_carries_the_security_headers(collector: Collector) -> None:
    for path in PAGES_AND_ANSWERS + ["/api/v1/machines?x=" + "a" * 20_000]:
        response = httpx.get(collector.url + path)
        assert response.status_code in (200, 404, 414), (path, response.status_code)
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "no-referrer", path
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "'unsafe-inline'" not in policy and "https:" not in policy, path
    for path in ("/docs", "/redoc"):
        docs = httpx.get(collector.url + path)
        assert docs.status_code == 200 and docs.headers["x-frame-options"] == "DENY"
        policy = docs.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "https:" not in policy, policy


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("Playwright for Python is not installed: make install (the `test` extra)",
                    pytrace=False)
    executable = need_program("chromium", "chromium")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


CATCH_VIOLATIONS = """window.__violations = [];
document.addEventListener('securitypolicyviolation',
  e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"""


def test_the_pages_work_under_their_content_security_policy(
        browser: Any, collector: Collector) -> None:
    page = browser.new_page()
    page.add_init_script(CATCH_VIOLATIONS)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(collector.url + "/")
    page.wait_for_selector(".card[data-machine='press07']", timeout=15_000)
    assert page.text_content(".card[data-machine='press07'] .name") == "Press 07"
    page.goto(collector.url + "/ledger")
    page.wait_for_function("document.querySelector('#date').value !== ''", timeout=15_000)
    assert page.evaluate("window.__violations") == []
    assert not [m for m in console if "Content Security Policy" in m]
    assert errors == []

    # the API docs draw from this box alone: every request elsewhere is refused
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(collector.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(collector.url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
    assert "/api/v1/ledger/daily" in "".join(paths)
    page.goto(collector.url + "/redoc")
    page.wait_for_selector("h1", timeout=20_000)
    assert "Retrofit data collector" in (page.text_content("h1") or "")
    # Redoc's own footer asks for its logo from its CDN: refused, and nothing else is
    assert [v for v in page.evaluate("window.__violations")
            if "cdn.redoc.ly/redoc/logo" not in v] == []
    assert not [m for m in console
                if "Content Security Policy" in m and "cdn.redoc.ly/redoc/logo" not in m]
    assert outside == []
    page.close()


def test_ledger_down_answers_503_and_logs_one_line_not_tracebacks(
        tmp_path: Path, throwaway_pg: ThrowawayPostgres) -> None:
    running = Collector(tmp_path, ledger_url=throwaway_pg.url)
    try:
        assert httpx.get(f"{running.url}/api/v1/machines/press07/latest").status_code == 200
        throwaway_pg.stop()
        answers = [httpx.get(f"{running.url}{path}", timeout=30)
                   for _ in range(10)
                   for path in ("/api/v1/machines/press07/latest", "/api/v1/tags",
                                "/api/v1/readings?machine=press07&tag=t&start=0")]
    finally:
        err = running.stop()
    assert {a.status_code for a in answers} == {503}
    assert {a.json()["detail"].split(":")[0] for a in answers} == {"the ledger could not answer"}
    assert all(a.headers["x-content-type-options"] == "nosniff" for a in answers)
    assert "Exception in ASGI application" not in err
    assert "Traceback" not in err
    failing = [line for line in err.splitlines() if "API requests fail" in line]
    assert len(failing) == 1, err  # folded: once a minute, whatever was asked


def test_a_flood_of_malformed_requests_is_one_log_line(collector: Collector) -> None:
    for i in range(200):
        with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as conn:
            conn.sendall(b"GET /api/v1/health?" + b"x" * (i % 7) + b" HTTP/1.1\r\nHost: \x00\x01"
                         b"\r\nbroken header line\r\n\r\n")
            try:
                conn.recv(1024)
            except OSError:
                pass
    assert httpx.get(collector.url + "/api/v1/health").status_code == 200
    err = collector.stop()
    invalid = [line for line in err.splitlines() if "Invalid HTTP request received" in line]
    assert len(invalid) == 1, err[-3000:]
    assert "Traceback" not in err
