"""`collector check` against generated mutations of the shipped configs: values of the wrong
type or out of range, keys deleted or unknown, whole lines dropped or doubled, tabs, files cut
short. Never a traceback and never an internal error (exit 1): either the config is still good
(exit 0) or exit 2 with every line naming the file, and a changed value is reported at its
path (or its parent's, when a check spans several fields)."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.cli import main
from tests.reliability.conftest import LONG, record

ROOT = Path(__file__).resolve().parents[2]
BASES = [ROOT / "config" / "collector.yaml", ROOT / "config" / "demo.yaml",
         ROOT / "config" / "central-postgresql.yaml"]
MUTATIONS = 1_500 if LONG else 200
STRANGE: list[Any] = [None, "", "abc", -1, 0, 10**20, -(10**20), 1.5, float("nan"), [], {},
                      True, "${RELIABILITY_UNSET_VARIABLE}", "\x00", "ü" * 5000, "1e999",
                      "' OR 1=1 --", [1, [2, [3]]], {"x": {"y": None}}, "40011", "-1s", "1000d"]
Path_ = list[str | int]
ENV = ("LEDGER_PASSWORD", "COLLECTOR_API_KEY", "COLLECTOR_WRITE_KEY", "MQTT_PASSWORD")


def paths(node: Any, at: Path_ | None = None) -> list[Path_]:
    """Every position in a loaded YAML document."""
    at = at or []
    out = [at] if at else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, [*at, k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, [*at, i])
    return out


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def get(node: Any, path: Path_) -> Any:
    for part in path:
        node = node[part]
    return node


def mutate(rng: random.Random, text: str) -> tuple[str, str, str | None]:
    """(kind, mutated text, dotted path of a replaced value or None)."""
    lines = text.splitlines(keepends=True)
    kind = rng.choice(["value", "value", "value", "delete", "unknown", "cut", "drop_line",
                       "double_line", "tab"])
    if kind == "cut":
        return kind, text[: rng.randrange(len(text))], None
    if kind in ("drop_line", "double_line", "tab"):
        i = rng.randrange(len(lines))
        if kind == "drop_line":
            del lines[i]
        elif kind == "double_line":
            lines.insert(i, lines[i])
        else:
            lines[i] = "\t" + lines[i]
        return kind, "".join(lines), None
    data = yaml.safe_load(text)
    path = rng.choice(paths(data))
    parent = get(data, path[:-1])
    if kind == "value":
        parent[path[-1]] = rng.choice(STRANGE)
        return kind, yaml.safe_dump(data, allow_unicode=True), dotted(path)
    if kind == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent["no_such_option"] = 1
    else:
        parent.append({"no_such_option": 1})
    return kind, yaml.safe_dump(data, allow_unicode=True), None


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`main()` points the root logger at this test's captured stderr: put it back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_check_answers_every_mutation_with_exit_0_or_2_and_the_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.setenv(name, "secret-value")
    rng = random.Random(20_261_205)
    texts = [p.read_text() for p in BASES]
    counts = {"ok": 0, "problems": 0}
    kinds: dict[str, int] = {}
    unnamed = []
    for n in range(MUTATIONS):
        kind, text, where = mutate(rng, rng.choice(texts))
        kinds[kind] = kinds.get(kind, 0) + 1
        cfg = tmp_path / f"m{n}.yaml"
        cfg.write_text(text)
        code = main(["check", "-c", str(cfg)])
        out = capsys.readouterr()
        both = out.out + out.err
        assert "Traceback" not in both, (kind, where, both)
        assert code in (0, 2), f"{kind} at {where}: exit {code}: {both}\n--- config:\n{text[:3000]}"
        if code == 0:
            counts["ok"] += 1
            assert re.search(r"\d+ machines?, \d+ sources?, \d+ tags?", out.out), both
            continue
        counts["problems"] += 1
        problems = [line for line in out.err.splitlines() if line.strip()]
        assert problems and all(line.startswith(str(cfg)) for line in problems), both
        if where is not None:
            parent = where.rsplit(".", 1)[0] if "." in where else where
            parent = re.sub(r"\[\d+\]$", "", parent) if parent == where else parent
            if not any(parent.split("[")[0] in line for line in problems):
                unnamed.append((where, problems))
    record("check_mutations", mutations=MUTATIONS, kinds=kinds, **counts,
           value_errors_not_at_their_path=len(unnamed))
    assert counts["problems"] > MUTATIONS // 3
    assert not unnamed, unnamed[:5]
