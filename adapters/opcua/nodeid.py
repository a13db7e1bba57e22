"""Strict parsing of OPC UA node ids and browse paths, so a typo is caught by `collector check`.

asyncua's own parser is lenient (an unknown key is ignored, a bad `b=` falls back to raw
bytes); a technician needs a precise message instead. Namespace URIs (`nsu=`) are kept as
text and turned into an index only once connected, because the index can differ per server.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: a config without OPC UA sources loads no asyncua
    from asyncua import ua

EXAMPLES = "e.g. ns=2;i=42, ns=1;s=Press07.Temperature, ns=3;g=<GUID>, ns=2;b=<base64>, nsu=urn:vendor:plc;s=Temp"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_B64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


@dataclass(frozen=True)
class NodeRef:
    """A parsed node id: namespace by index or URI, and the identifier in its native type."""

    kind: str  # "i" | "s" | "g" | "b"
    identifier: int | str | uuid.UUID | bytes
    namespace: int = 0
    namespace_uri: str | None = None

    def resolve(self, namespaces: list[str] | None = None) -> ua.NodeId:
        """The asyncua NodeId; `namespaces` (the server's NamespaceArray) resolves `nsu=`."""
        from asyncua import ua

        index = self.namespace
        if self.namespace_uri is not None:
            if namespaces is None or self.namespace_uri not in namespaces:
                raise LookupError(f"the server has no namespace {self.namespace_uri!r}")
            index = namespaces.index(self.namespace_uri)
        kind = {
            "i": ua.NodeIdType.Numeric,
            "s": ua.NodeIdType.String,
            "g": ua.NodeIdType.Guid,
            "b": ua.NodeIdType.ByteString,
        }[self.kind]
        return node_id(self.identifier, index, kind)


def node_id(identifier: int | str | uuid.UUID | bytes, namespace: int = 0,
            kind: ua.NodeIdType | None = None) -> ua.NodeId:
    """An asyncua NodeId of plain values; without `kind`, asyncua picks it from the identifier."""
    from asyncua import ua

    # asyncua annotates the fields with its wire types (Int32, Int16, ...) but takes plain
    # values, as its own ObjectIds constants are
    return ua.NodeId(identifier, namespace, kind)  # type: ignore[arg-type]


def parse_node_id(text: str) -> NodeRef:
    """Parse `ns=2;i=42`, `ns=1;s=...`, `g=`, `b=` and `nsu=...;` forms; ValueError says why."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a node id is required ({EXAMPLES})")
    rest = text.strip()
    namespace, namespace_uri = 0, None
    if rest.startswith("ns="):
        head, sep, rest = rest.partition(";")
        if not sep:
            raise ValueError(f"{text!r} has a namespace but no identifier after ';' ({EXAMPLES})")
        digits = head[3:]
        if not digits.isdigit() or int(digits) > 65535:
            raise ValueError(f"{text!r}: the namespace index must be a number 0..65535 ({EXAMPLES})")
        namespace = int(digits)
    elif rest.startswith("nsu="):
        # a URI may itself contain ';' only rarely; the identifier starts at the last ';i=' etc.
        match = re.match(r"^nsu=(.+?);([isgb]=.*)$", rest, re.DOTALL)
        if not match or not match.group(1):
            raise ValueError(f"{text!r}: write nsu=<namespace URI>;<identifier> ({EXAMPLES})")
        namespace_uri, rest = match.group(1), match.group(2)
    kind, sep, ident = rest.partition("=")
    if not sep or kind not in ("i", "s", "g", "b"):
        raise ValueError(f"{text!r}: the identifier must start with i=, s=, g= or b= ({EXAMPLES})")
    if kind == "i":
        if not ident.isdigit() or int(ident) > 0xFFFFFFFF:
            raise ValueError(f"{text!r}: a numeric identifier (i=) must be a whole number 0..4294967295")
        return NodeRef("i", int(ident), namespace, namespace_uri)
    if kind == "s":
        if not ident:
            raise ValueError(f"{text!r}: the string identifier after s= is empty")
        return NodeRef("s", ident, namespace, namespace_uri)
    if kind == "g":
        guid = ident.strip("{}")
        if not _GUID.match(guid):
            raise ValueError(f"{text!r}: a GUID identifier (g=) looks like 09087e75-8e5e-499b-954f-f2a9603db28a")
        return NodeRef("g", uuid.UUID(guid), namespace, namespace_uri)
    try:
        if not _B64.match(ident) or len(ident) % 4:
            raise binascii.Error
        raw = base64.b64decode(ident, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text!r}: an opaque identifier (b=) must be base64 text, e.g. b=M/RbKBsRVkePCePcx24oRA==") from None
    return NodeRef("b", raw, namespace, namespace_uri)


def format_node_id(node_id: ua.NodeId) -> str:
    """The canonical text form we ask technicians to paste (`ns=2;s=...`, `i=2258`)."""
    from asyncua import ua

    ns = f"ns={node_id.NamespaceIndex};" if node_id.NamespaceIndex else ""
    ident = node_id.Identifier
    t = node_id.NodeIdType
    if t in (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric):
        return f"{ns}i={ident!s}"
    if t == ua.NodeIdType.String:
        return f"{ns}s={ident!s}"
    if t == ua.NodeIdType.Guid:
        return f"{ns}g={ident!s}"
    raw = ident if isinstance(ident, bytes) else str(ident).encode()  # asyncua allows a str too
    return f"{ns}b={base64.b64encode(raw).decode('ascii')}"


@dataclass(frozen=True)
class BrowsePath:
    """A path of browse names from the Objects folder, each `ns:Name` (ns 0 when omitted)."""

    elements: tuple[tuple[int, str], ...]

    def relative_path(self) -> ua.RelativePath:
        from asyncua import ua

        path = ua.RelativePath()
        for ns, name in self.elements:
            element = ua.RelativePathElement()
            element.ReferenceTypeId = node_id(ua.ObjectIds.HierarchicalReferences)
            # asyncua annotates these with its Boolean marker class; they hold a plain bool
            element.IsInverse = False  # type: ignore[assignment]
            element.IncludeSubtypes = True  # type: ignore[assignment]
            element.TargetName = ua.QualifiedName(name, ns)
            path.Elements.append(element)
        return path


def parse_browse_path(text: str) -> BrowsePath:
    """`2:Press07/2:Temperature` (from the Objects folder; a leading `Objects/` is allowed)."""
    if not isinstance(text, str) or not text.strip("/ "):
        raise ValueError("a browse path is required, e.g. 2:Press07/2:Temperature")
    parts = [p for p in text.strip().strip("/").split("/")]
    if parts and parts[0] in ("Objects", "0:Objects"):
        parts = parts[1:]
    if not parts:
        raise ValueError(f"{text!r} names the Objects folder itself; continue the path to a variable")
    elements = []
    for part in parts:
        ns, sep, name = part.partition(":")
        if not sep:
            ns, name = "0", part
        if not ns.isdigit() or int(ns) > 65535 or not name:
            raise ValueError(f"{text!r}: each step is <namespace index>:<BrowseName>, e.g. 2:Press07/2:Temperature (bad step {part!r})")
        elements.append((int(ns), name))
    return BrowsePath(tuple(elements))
