"""Every kind of config problem gets one line naming its path, what is wrong and its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector.config import ConfigError, parse_config, parse_duration, parse_size


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("text,seconds", [
    ("250ms", 0.25), ("1s", 1.0), ("5m", 300.0), ("1h", 3600.0), ("7d", 604800.0),
    (2, 2.0), (0.5, 0.5), ("1.5s", 1.5),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["1 minute", "-1s", "fast", True, -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes() -> None:
    assert parse_size("500MB") == 500_000_000
    assert parse_size("1GiB") == 1024**3
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("lots")


def test_defaults() -> None:
    config = parse_config("machines: []")
    assert config.ledger.url == "sqlite:///data/ledger.db"
    assert config.api.port == 8080 and config.api.api_keys == []
    assert config.pipeline.flush_interval == 2.0
    assert config.counts() == (0, 0, 0)


def test_empty_file_is_a_valid_empty_config() -> None:
    assert parse_config("").machines == []


def test_not_yaml() -> None:
    (line,) = problems("machines:\n  - id: a\n   bad: [\n")
    assert line.startswith("not valid YAML") and "(line" in line


def test_not_a_mapping() -> None:
    assert problems("- a\n- b\n") == [
        "the config must be a mapping with keys such as 'ledger' and 'machines' (line 1)"]


def test_unknown_top_level_key() -> None:
    assert problems("machines: []\nledgr:\n  url: x\n") == [
        "ledgr: unknown field 'ledgr'; check the spelling against the README (line 2)"]


def test_bad_identifier_and_missing_id() -> None:
    out = problems("machines:\n  - id: Press 07\n  - name: x\n")
    assert out == [
        "machines[0].id: 'Press 07' may only contain lowercase letters, digits, '_' and '-' (line 2)",
        "machines[1].id: required field is missing (line 3)",
    ]


def test_bad_duration_in_config() -> None:
    out = problems("pipeline:\n  flush_interval: soon\n")
    assert out == ["pipeline.flush_interval: 'soon' is not a duration (use e.g. 500ms, 1s, 5m, 1h, 7d) (line 2)"]


def test_wrong_type() -> None:
    (line,) = problems("api:\n  port: eighty\n")
    assert line.startswith("api.port: ") and "integer" in line and "(line 2)" in line


def test_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_PW", "s3cret")
    config = parse_config("ledger:\n  url: postgresql://c:${LEDGER_PW}@127.0.0.1/plant\n")
    assert config.ledger.url == "postgresql://c:s3cret@127.0.0.1/plant"


def test_unset_env_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert problems("ledger:\n  url: ${NOT_SET_ANYWHERE}\n") == [
        "ledger.url: environment variable NOT_SET_ANYWHERE is not set "
        "(export it, or write the value instead of ${NOT_SET_ANYWHERE}) (line 2)"]


def test_duplicate_machine_ids() -> None:
    assert problems("machines:\n  - id: a\n  - id: b\n  - id: a\n") == [
        "machines[2].id: duplicate machine id 'a' (also machines[0]) (line 4)"]


def test_unknown_protocol() -> None:
    (line,) = problems("machines:\n  - id: a\n    sources:\n      - id: s\n        protocol: profibus\n")
    assert line.startswith("machines[0].sources[0].protocol: protocol 'profibus' is not one of")
    assert "(line 5)" in line


def test_missing_protocol() -> None:
    (line,) = problems("machines:\n  - id: a\n    sources:\n      - id: s\n")
    assert line.startswith("machines[0].sources[0].protocol: 'protocol' is missing; use one of")


def test_sources_are_read_by_the_adapter_models_given() -> None:
    """The config knows the adapters only through the source models handed to it: those the
    registry's adapters registered, or the ones a caller passes."""
    from adapters.base import registry

    text = ("machines:\n  - id: a\n    sources:\n      - {id: s, protocol: mqtt, "
            "broker: 'mqtt://127.0.0.1', tags: [{name: t, topic: x}]}\n")
    assert parse_config(text).machines[0].sources[0].protocol == "mqtt"
    only_modbus = {"modbus": registry()["modbus"].config_model}
    with pytest.raises(ConfigError) as info:
        parse_config(text, sources=only_modbus)
    assert [str(p) for p in info.value.problems] == [
        "machines[0].sources[0].protocol: protocol 'mqtt' is not one of 'modbus' (line 4)"]
    with pytest.raises(ConfigError) as info:
        parse_config(text, sources={})
    assert [str(p) for p in info.value.problems] == [
        "machines[0].sources[0]: no adapter is loaded to read sources entries (load them "
        "first: adapters.base.registry()) (line 4)"]
    assert parse_config("machines:\n  - id: a\n", sources={}).machines[0].sources == []


def test_config_file_not_found(tmp_path: Path) -> None:
    from collector.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "not found" in str(info.value)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_check_command_summary_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("machines:\n  - id: press07\n")
    result = run_cli("check", "-c", str(good))
    assert result.returncode == 0 and result.stdout.strip() == "1 machine, 0 sources, 0 tags"
    bad = tmp_path / "bad.yaml"
    bad.write_text("machines:\n  - id: a\n  - id: a\napi:\n  prot: 1\n")
    result = run_cli("check", "-c", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"{bad}: api.prot: unknown field 'prot'; check the spelling against the README (line 5)"]
    assert "Traceback" not in result.stderr


def test_check_uses_the_environment_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("machines: [{id: a}, {id: b}]\n")
    result = subprocess.run([sys.executable, "-m", "collector.cli", "check"], capture_output=True,
                            text=True, timeout=60, env={"COLLECTOR_CONFIG": str(cfg), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip() == "2 machines, 0 sources, 0 tags"


def test_every_example_config_passes_check() -> None:
    root = Path(__file__).resolve().parent.parent / "config"
    examples = sorted(root.glob("*.yaml"))
    assert examples, "config/ holds example configurations"
    import os
    import re

    for example in examples:
        # examples take secrets from the environment, as a real box should
        names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", example.read_text()))
        env = {**os.environ, **{name: "example" for name in names}}
        result = subprocess.run([sys.executable, "-m", "collector.cli", "check", "-c", str(example)],
                                capture_output=True, text=True, timeout=60, cwd=root.parent, env=env)
        assert result.returncode == 0, f"{example.name}: {result.stderr}"
        assert re.fullmatch(r"\d+ machines?, \d+ sources?, \d+ tags?\n", result.stdout)


RENAMED_SOURCES = {
    "max_backoff": "{id: ua, protocol: opcua, endpoint: 'opc.tcp://127.0.0.1:4840', "
                   "tags: [{name: t, node: 'ns=2;i=2'}]",
    "reconnect_max_delay": "{id: broker, protocol: mqtt, broker: 'mqtt://127.0.0.1:1883', "
                           "tags: [{name: t, topic: a/t}]",
}


@pytest.mark.parametrize("old", sorted(RENAMED_SOURCES))
def test_a_renamed_source_option_still_works_and_check_says_what_to_write(
        tmp_path: Path, old: str) -> None:
    text = ("machines:\n  - id: press07\n  - id: oven1\n    sources:\n"
            f"      - {RENAMED_SOURCES[old]}, {old}: 5s}}\n")
    source = parse_config(text).machines[1].sources[0]
    assert source.reconnect_delay_max == 5.0
    assert source.reconnect_backoff().next() == 1.0
    path = tmp_path / "old.yaml"
    path.write_text(text)
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 machines, 1 source, 1 tag\n"
    assert result.stderr.splitlines() == [
        f"{path}: machines[1].sources[0].{old}: deprecated, write reconnect_delay_max (same meaning)"]


@pytest.mark.parametrize("old", sorted(RENAMED_SOURCES))
def test_an_old_and_a_new_name_together_are_a_problem(old: str) -> None:
    text = (f"machines:\n  - id: oven1\n    sources:\n"
            f"      - {RENAMED_SOURCES[old]}, {old}: 5s, reconnect_delay_max: 10s}}\n")
    assert problems(text) == [
        f"machines[0].sources[0].{old}: {old} is the old name of reconnect_delay_max, which is "
        "also set; keep only reconnect_delay_max (line 4)"]


def test_reconnect_delays_out_of_order_are_a_problem() -> None:
    text = ("machines:\n  - id: oven1\n    sources:\n"
            f"      - {RENAMED_SOURCES['max_backoff']}, reconnect_delay: 10s, "
            "reconnect_delay_max: 2s}\n")
    assert problems(text) == [
        "machines[0].sources[0].reconnect_delay_max: must not be less than reconnect_delay "
        "(10 s) (line 4)"]
