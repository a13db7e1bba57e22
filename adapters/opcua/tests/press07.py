"""The node set the OPC UA adapter's tests read: Press07 with one variable per scalar built-in
type and a few special nodes (numeric, Guid and opaque ids, an array, bad and uncertain status),
served by the kit's asyncua server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from asyncua import Node, Server, ua

from adapters.opcua.nodeid import node_id
from tests.kit.opcua import OpcServer

GUID = uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a")
OPAQUE = b"\x01\x02press"
STAMP = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

# name -> (variant type, initial value): one variable per scalar built-in type
SCALARS: dict[str, tuple[ua.VariantType, Any]] = {
    "Bool": (ua.VariantType.Boolean, True),
    "SByte": (ua.VariantType.SByte, -128),
    "Byte": (ua.VariantType.Byte, 255),
    "Int16": (ua.VariantType.Int16, -32768),
    "UInt16": (ua.VariantType.UInt16, 65535),
    "Int32": (ua.VariantType.Int32, -2147483648),
    "UInt32": (ua.VariantType.UInt32, 4294967295),
    "Int64": (ua.VariantType.Int64, -9223372036854775808),
    "UInt64": (ua.VariantType.UInt64, 18446744073709551615),
    "Float": (ua.VariantType.Float, 21.3),
    "Double": (ua.VariantType.Double, 1234.5678901234),
    "String": (ua.VariantType.String, "Press 07 ✓"),
    "DateTime": (ua.VariantType.DateTime, STAMP),
    "Text": (ua.VariantType.LocalizedText, ua.LocalizedText("running", "en")),
    "Bytes": (ua.VariantType.ByteString, b"\x00\xffAB"),
    "Guid": (ua.VariantType.Guid, GUID),
}


async def build_press07(server: Server, idx: int) -> dict[str, Node]:
    """Press07 under Objects, its variables by name."""
    press = await server.nodes.objects.add_object(node_id("Press07", idx), ua.QualifiedName("Press07", idx))
    n: dict[str, Node] = {}

    async def add(name: str, nodeid: ua.NodeId, variant: ua.Variant) -> None:
        n[name] = await press.add_variable(nodeid, ua.QualifiedName(name, idx), variant)

    for name, (vtype, value) in SCALARS.items():
        await add(name, node_id(f"Press07.{name}", idx), ua.Variant(value, vtype))
    await add("Temperature", node_id(42, idx), ua.Variant(20.5, ua.VariantType.Double))
    await add("ByGuid", node_id(GUID, idx, ua.NodeIdType.Guid), ua.Variant(7, ua.VariantType.Int32))
    await add("Opaque", node_id(OPAQUE, idx, ua.NodeIdType.ByteString), ua.Variant(8, ua.VariantType.Int32))
    await add("Array", node_id("Press07.Array", idx), ua.Variant([10, 20, 30], ua.VariantType.Int32))
    await add("Broken", node_id("Press07.Broken", idx), ua.Variant(1.0, ua.VariantType.Double))
    await add("Doubtful", node_id("Press07.Doubtful", idx), ua.Variant(3.25, ua.VariantType.Double))
    await add("Counter", node_id("Press07.Counter", idx), ua.Variant(0, ua.VariantType.Int32))
    # asyncua annotates these fields with its wire types (UInt32, DateTime) but takes an int
    # and a datetime, as its own StatusCodes are
    await server.write_attribute_value(n["Broken"].nodeid, ua.DataValue(
        StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure)))  # type: ignore[arg-type]
    await server.write_attribute_value(n["Doubtful"].nodeid, ua.DataValue(
        Value=ua.Variant(3.25, ua.VariantType.Double), SourceTimestamp=STAMP,  # type: ignore[arg-type]
        StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)))  # type: ignore[arg-type]
    return n


def press07_server(port: int | None = None, *, security: dict[str, Any] | None = None) -> OpcServer:
    """A kit server (not started) holding Press07."""
    return OpcServer(build_press07, port, security=security)
