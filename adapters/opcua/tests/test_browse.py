"""`collector opcua-browse`, called through its argparse handler against a real server."""

from __future__ import annotations

import argparse

import pytest
import yaml

from adapters.opcua.command import add_cli
from adapters.opcua.config import OpcUaTagConfig
from tests.kit.ports import free_port


def run_browse(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["opcua-browse", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_tree_shows_ids_types_values_and_yaml(opc_server, capsys) -> None:
    code, out, err = run_browse(capsys, "--endpoint", opc_server.url)
    assert code == 0, err
    lines = out.splitlines()
    assert "Objects  [i=85]" in lines
    assert "   ├─ Temperature  [ns=2;i=42]  Double = 20.5" in lines
    assert "   ├─ Float  [ns=2;s=Press07.Float]  Float = 21.3" in lines
    assert "   ├─ Array  [ns=2;s=Press07.Array]  Int32 = [10, 20, 30] (array of 3)" in lines
    assert "   ├─ Broken  [ns=2;s=Press07.Broken]  Double = (BadSensorFailure)" in lines
    assert "   ├─ Doubtful  [ns=2;s=Press07.Doubtful]  Double = 3.25 (UncertainLastUsableValue)" in lines
    assert "(standard server diagnostics; browse them with --node i=2253)" in out
    # the tag lines are valid config: paste them and they validate
    tags = yaml.safe_load(out[out.index("\ntags:"):])["tags"]
    parsed = [OpcUaTagConfig.model_validate(t) for t in tags]
    by_name = {t.name: t for t in parsed}
    assert by_name["press07_temperature"].node == "ns=2;i=42"
    assert by_name["press07_array_2"].index == 2
    assert by_name["press07_byguid"].node == "ns=2;g=09087e75-8e5e-499b-954f-f2a9603db28a"


def test_start_node_and_depth(opc_server, capsys) -> None:
    code, out, _ = run_browse(capsys, "--endpoint", opc_server.url, "--node", "ns=2;s=Press07", "--depth", "1")
    assert code == 0
    assert out.splitlines()[1] == "Press07  [ns=2;s=Press07]"
    assert "Counter  [ns=2;s=Press07.Counter]  Int32 = " in out
    code, out, _ = run_browse(capsys, "--endpoint", opc_server.url, "--depth", "0")
    assert code == 0 and "Press07" not in out.split("\ntags:")[0]


def test_connection_refused_is_one_line(capsys) -> None:
    port = free_port()
    code, out, err = run_browse(capsys, "--endpoint", f"opc.tcp://127.0.0.1:{port}", "--timeout", "2s")
    assert code == 1 and out == ""
    assert err == (f"error: connection refused by 127.0.0.1:{port}; is the OPC UA server running "
                   "and is the port in 'endpoint' right?\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["--endpoint", "http://x:1"], "error: --endpoint: 'http://x:1' is not an OPC UA endpoint"),
    (["--endpoint", "opc.tcp://127.0.0.1:1", "--node", "ns=2;q=1"], "error: --node 'ns=2;q=1': the identifier"),
    (["--endpoint", "opc.tcp://127.0.0.1:1", "--security-policy", "Basic256Sha256"],
     "error: security_policy Basic256Sha256 needs 'certificate' and 'private_key'"),
])
def test_bad_options_are_one_line(capsys, argv: list[str], message: str) -> None:
    code, out, err = run_browse(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_unknown_start_node(opc_server, capsys) -> None:
    code, _, err = run_browse(capsys, "--endpoint", opc_server.url, "--node", "ns=2;s=Nope")
    assert code == 1 and err == f"error: node ns=2;s=Nope does not exist on {opc_server.url}\n"


def test_tag_lines_offer_no_server_internals_and_nothing_on_stderr(opc_server, capsys) -> None:
    code, out, err = run_browse(capsys, "--endpoint", opc_server.url, "--depth", "4")
    assert (code, err) == (0, "")
    tags = yaml.safe_load(out[out.index("\ntags:"):])["tags"]
    assert tags and all(not t["node"].startswith("i=") for t in tags), tags  # namespace 0
    assert not any("aliases" in t["name"] or "lastchange" in t["name"] for t in tags)
