"""Config validation: every node id form, and precise messages for what is wrong."""

from __future__ import annotations

import uuid

import pytest
from asyncua import ua

from adapters.opcua.config import OpcUaSourceConfig
from adapters.opcua.nodeid import format_node_id, node_id, parse_browse_path, parse_node_id
from collector.config import ConfigError, parse_config


@pytest.mark.parametrize(("text", "expected"), [
    ("ns=2;i=42", node_id(42, 2)),
    ("i=2258", node_id(2258, 0)),
    ("ns=1;s=Press07.Temperature", node_id("Press07.Temperature", 1)),
    ("ns=1;s=a;b=c", node_id("a;b=c", 1)),  # a string id may contain ';' and '='
    ("ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a",
     node_id(uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a"), 3, ua.NodeIdType.Guid)),
    ("ns=2;b=AQJwcmVzcw==", node_id(b"\x01\x02press", 2, ua.NodeIdType.ByteString)),
])
def test_node_id_forms(text: str, expected: ua.NodeId) -> None:
    node = parse_node_id(text).resolve()
    assert node == expected
    assert parse_node_id(format_node_id(node)).resolve() == expected  # round trip


def test_namespace_uri_is_resolved_against_the_server() -> None:
    ref = parse_node_id("nsu=urn:vendor:plc;s=Line2.Speed")
    assert ref.resolve(["http://opcfoundation.org/UA/", "urn:x", "urn:vendor:plc"]) == node_id("Line2.Speed", 2)
    with pytest.raises(LookupError, match="no namespace 'urn:vendor:plc'"):
        ref.resolve(["http://opcfoundation.org/UA/"])


@pytest.mark.parametrize(("text", "message"), [
    ("", "a node id is required"),
    ("ns=2", "has a namespace but no identifier"),
    ("ns=x;i=1", "namespace index must be a number 0..65535"),
    ("ns=2;x=5", "the identifier must start with i=, s=, g= or b="),
    ("ns=2;i=4.5", "a numeric identifier (i=) must be a whole number"),
    ("ns=2;i=99999999999", "a numeric identifier (i=) must be a whole number"),
    ("ns=2;s=", "the string identifier after s= is empty"),
    ("ns=2;g=1234", "a GUID identifier (g=) looks like"),
    ("ns=2;b=not base64!", "an opaque identifier (b=) must be base64 text"),
    ("nsu=;s=x", "write nsu=<namespace URI>;<identifier>"),
    ("Press07.Temperature", "the identifier must start with i=, s=, g= or b="),
])
def test_bad_node_ids_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_node_id(text)
    assert message in str(err.value)


def test_browse_path() -> None:
    assert parse_browse_path("Objects/2:Press07/2:Temperature").elements == ((2, "Press07"), (2, "Temperature"))
    assert parse_browse_path("/2:Press07/Status").elements == ((2, "Press07"), (0, "Status"))
    with pytest.raises(ValueError, match="bad step 'x:Temp'"):
        parse_browse_path("2:Press07/x:Temp")


CONFIG = """
machines:
  - id: press07
    sources:
      - id: hmi
        protocol: opcua
        endpoint: {endpoint}
        {extra}
        tags:
          - name: temperature
            {tag}
"""


def problems(endpoint: str = "opc.tcp://127.0.0.1:4840", extra: str = "mode: subscribe",
             tag: str = 'node: "ns=2;i=42"') -> list[str]:
    try:
        parse_config(CONFIG.format(endpoint=endpoint, extra=extra, tag=tag))
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_valid_source() -> None:
    assert problems() == []
    assert problems(extra="security_policy: Basic256Sha256\n        certificate: c.der\n"
                          "        private_key: k.pem\n        username: op\n        password: pw") == []


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"tag": 'node: "ns=2;q=1"'},
     "machines[0].sources[0].tags[0].node: 'ns=2;q=1': the identifier must start with i=, s=, g= or b="),
    ({"tag": "unit: degC"}, "machines[0].sources[0].tags[0]: tag 'temperature' needs 'node'"),
    ({"tag": 'node: "i=1"\n            browse_path: "2:A/2:B"'},
     "machines[0].sources[0].tags[0]: tag 'temperature' has both 'node' and 'browse_path'"),
    ({"endpoint": "tcp://plc:4840"}, "machines[0].sources[0].endpoint: 'tcp://plc:4840' is not an OPC UA endpoint"),
    ({"extra": "mode: push"}, "machines[0].sources[0].mode: 'push' is not one of 'subscribe' or 'poll'"),
    ({"extra": "security_policy: Basic128"}, "machines[0].sources[0].security_policy: 'Basic128' is not one of"),
    ({"extra": "security_policy: Basic256Sha256"},
     "machines[0].sources[0]: security_policy Basic256Sha256 needs 'certificate' and 'private_key'"),
    ({"extra": "security_mode: Sign"}, "machines[0].sources[0]: security_mode Sign needs a security_policy"),
    ({"extra": "password: x"}, "machines[0].sources[0]: 'password' is set but 'username' is not"),
    ({"extra": "sampling: 1s"}, "machines[0].sources[0].sampling: unknown field 'sampling'"),
    ({"tag": 'node: "i=1"\n            index: -1'}, "machines[0].sources[0].tags[0].index:"),
])
def test_config_problems_name_the_path(kwargs: dict[str, str], expected: str) -> None:
    found = problems(**kwargs)
    assert len(found) == 1 and found[0].startswith(expected), found
    assert "(line " in found[0]


def test_example_configs_validate(monkeypatch) -> None:
    from pathlib import Path

    from collector.config import load_config

    root = Path(__file__).parents[3]
    monkeypatch.setenv("IMM03_OPCUA_PASSWORD", "x")
    config = load_config(root / "config" / "opcua-machine.yaml")
    source = config.machines[0].sources[0]
    assert isinstance(source, OpcUaSourceConfig)
    assert (source.protocol, source.security_policy, len(source.tags)) == ("opcua", "Basic256Sha256", 9)
    assert source.password == "x"
    assert load_config(root / "adapters" / "opcua" / "sample.yaml").counts() == (1, 1, 6)
