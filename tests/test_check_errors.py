"""`collector check` on the configs people really write wrong: every answer names the file, says
what to change in plain words, exits 2, and never repeats a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "S3cr3tApiKey_zq82"


def check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def problems(tmp_path: Path, text: str | bytes, **env: str) -> list[str]:
    path = tmp_path / "collector.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    result = check(path, **env)
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    return [line.removeprefix(f"{path}: ") for line in lines]


MODBUS = """machines:
  - id: press07
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        tags:
          - name: motor_current
            register: {register}
            address: {address}
"""


@pytest.mark.parametrize(("register", "address", "kind", "protocol_address"), [
    ("holding", '"40011"', "holding", 10),
    ("input", '"30001"', "input", 0),
    ("coil", '"00017"', "coil", 16),
    ("discrete", '"10003"', "discrete", 2),
    ("holding", '"400101"', "holding", 100),
])
def test_register_map_numbering_is_explained_with_the_address_and_kind_it_means(
        tmp_path: Path, register: str, address: str, kind: str, protocol_address: int) -> None:
    (line,) = problems(tmp_path, MODBUS.format(register=register, address=address))
    given = address.strip('"')
    assert line.startswith(f"machines[0].sources[0].tags[0].address: '{given}' looks like "
                           f"register-map numbering ({given[0]}xxxx: {kind} registers counted "
                           f"from 1)")
    assert f"write `register: {kind}` and `address: {protocol_address}`" in line
    assert f"If the map counts from 0, write `address: {protocol_address + 1}`" in line
    assert line.endswith("(line 10)")


def test_an_address_in_quotes_is_asked_for_as_a_number(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, MODBUS.format(register="holding", address='"12"'))
    assert line == ("machines[0].sources[0].tags[0].address: '12' is text; write the address as "
                    "a number without quotes (address: 12) (line 10)")


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "machines: []\n",
                                  "ledger:\n  url: sqlite:///l.db\n"])
def test_a_config_without_machines_says_what_a_config_needs(tmp_path: Path, text: str) -> None:
    (line,) = problems(tmp_path, text)
    assert line.startswith("no machines: a config needs `machines:` with at least one machine")
    assert "config/collector.yaml" in line


@pytest.mark.parametrize(("machines", "summary"), [
    ("[{id: a}]", "1 machine, 0 sources, 0 tags"),
    ("[{id: a}, {id: b}]", "2 machines, 0 sources, 0 tags"),
])
def test_the_summary_counts_in_words(tmp_path: Path, machines: str, summary: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"machines: {machines}\n")
    assert check(path).stdout == summary + "\n"


def test_one_of_each_is_singular(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(MODBUS.format(register="holding", address="10"))
    result = check(path)
    assert (result.returncode, result.stdout) == (0, "1 machine, 1 source, 1 tag\n")


@pytest.mark.parametrize(("text", "expected"), [
    ("machines:\n  - id: a\n    sources:\n      - id: io\n        protocol: modbus\n"
     "       host: 127.0.0.1\n",
     "not valid YAML: the indentation does not line up: this line is indented differently from "
     "the entries above it; entries of one list or section start in the same column "
     "(line 6, column 8)"),
    ("machines:\n  - id: a\n    sources:\n      - id: io\n        protocol: modbus\n"
     "          host: 127.0.0.1\n",
     "not valid YAML: a 'name: value' where none can be: this line is probably indented too far "
     "(it continues the line above), or a value holding ': ' needs quotes (line 6, column 15)"),
    ("machines:\n\t- id: a\n",
     "not valid YAML: a tab character: YAML indents with spaces only; replace the tab with "
     "spaces (line 2, column 1)"),
    ("machines: [{id: a}\n",
     "not valid YAML: a [ ... ] list is not closed, or a value in it needs quotes (line 2, column 1)"),
    ('machines:\n  - id: "a\n',
     "not valid YAML: the file ends inside quoted text: a quote (\" or ') is not closed "
     "(line 3, column 1)"),
])
def test_broken_yaml_is_answered_in_plain_words_with_file_and_line(
        tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_a_secret_from_the_environment_is_never_echoed(tmp_path: Path) -> None:
    text = ("api:\n  api_keys: ${API_KEY}\n  port: ${API_KEY}\n"
            "machines:\n  - id: a\n    name: ${API_KEY}x\n    area: [1]\n")
    lines = problems(tmp_path, text, API_KEY=SECRET)
    assert not any(SECRET in line for line in lines), lines
    assert "api.api_keys: must be a list, one '- item' per line or [a, b] (got '***') (line 2)" in lines
    assert any(line.startswith("api.port:") and "'***'" in line for line in lines), lines


def test_a_secret_field_is_never_echoed_even_when_written_in_the_file(tmp_path: Path) -> None:
    text = ("api:\n  write_keys: hunter2-write\nmachines:\n  - id: a\n    sources:\n"
            "      - {id: s, protocol: mqtt, broker: 'mqtt://127.0.0.1:1883', password: [hunter2-pw],"
            " tags: [{name: t, topic: a/b}]}\n")
    lines = problems(tmp_path, text)
    assert len(lines) == 2, lines
    assert not any("hunter2" in line for line in lines), lines
    assert lines[0].startswith("api.write_keys: must be a list")


@pytest.mark.parametrize("garbage", [bytes(range(256)) * 8, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" * 20])
def test_binary_garbage_is_not_a_text_file(tmp_path: Path, garbage: bytes) -> None:
    (line,) = problems(tmp_path, garbage)
    assert line.startswith("not a text file")
    assert "UnicodeDecodeError" not in line


def test_text_in_another_encoding_says_which_byte(tmp_path: Path) -> None:
    (line,) = problems(tmp_path, "machines:\n  - id: a\n    name: Presse Gro\xdf\n".encode("latin-1"))
    assert line == ("not UTF-8 text: byte 0xdf is not UTF-8; save the file as UTF-8 (most editors "
                    "offer it under 'Save as' or 'Encoding') (line 3)")


def test_a_key_written_twice_names_both_lines(tmp_path: Path) -> None:
    text = "api:\n  port: 5020\n  host: 127.0.0.1\n  port: 9999\nmachines:\n  - id: a\n    id: b\n"
    assert problems(tmp_path, text) == [
        "api.port: 'port' is written twice in the same place, on lines 2 and 4; only the last "
        "one would count, so delete one of them (line 4)",
        "machines[0].id: 'id' is written twice in the same place, on lines 6 and 7; only the "
        "last one would count, so delete one of them (line 7)",
    ]


@pytest.mark.parametrize(("url", "expected"), [
    ("postgres+nope://collector:pw@db/plant",
     "'postgres+nope' names a driver the collector does not know ('nope'); write postgresql:// "
     "and the collector picks its own"),
    ("postgresql://collector:pw@db:notaport/plant",
     "the port 'notaport' is not a number; write host:port with a number, e.g. "
     "postgresql://user:password@db.plant:5432/ledger"),
    ("postgresql://collector:pw@db:99999/plant",
     "port 99999 is out of range; use 1 to 65535 (PostgreSQL: 5432)"),
    ("mysql://collector:pw@db/plant",
     "database 'mysql' is not supported; write sqlite:///data/ledger.db or "
     "postgresql://user:password@host:5432/db"),
    ("ledger.db",
     "not a database URL; write sqlite:///data/ledger.db or "
     "postgresql://user:password@host:5432/db"),
])
def test_a_ledger_url_that_cannot_work_is_a_problem_at_ledger_url(
        tmp_path: Path, url: str, expected: str) -> None:
    lines = problems(tmp_path, f"ledger:\n  url: {url}\nmachines:\n  - id: a\n")
    assert lines == [f"ledger.url: {expected} (line 2)"]
    assert "pw@" not in lines[0]


@pytest.mark.parametrize("url", ["sqlite:///data/ledger.db", "sqlite+aiosqlite:////var/lib/l.db",
                                 "postgresql://c:pw@db:5432/plant",
                                 "postgresql+asyncpg://c:pw@db/plant",
                                 "postgresql://c@/plant?host=/var/run/postgresql"])
def test_ledger_urls_that_work_pass(tmp_path: Path, url: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"ledger:\n  url: {url}\nmachines:\n  - id: a\n")
    result = check(path)
    assert (result.returncode, result.stderr) == (0, "")
