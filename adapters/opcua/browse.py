"""`collector opcua-browse`: show a server's address space with node ids, types and values.

Prints a tree (objects and variables, following hierarchical references) and then the YAML tag
lines for every variable found, ready to paste under a source's `tags:`. Uses the same
security options as the config, so what works here works in `collector run`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass, field

from asyncua import Client, ua
from pydantic import ValidationError

from .config import OpcUaSourceConfig
from .errors import describe
from .nodeid import format_node_id, node_id, parse_node_id
from .security import configure_security, ensure_client_certificate
from .values import ValueProblem, convert, status_name

SERVER_OBJECT = node_id(ua.ObjectIds.Server)
MAX_ELEMENTS = 16  # array elements offered as tag lines


@dataclass
class Entry:
    node_id: ua.NodeId
    name: str
    node_class: ua.NodeClass
    depth: int
    path: list[str]
    children: list[Entry] = field(default_factory=list)
    data_type: str = ""
    value: str = ""
    array: int | None = None  # element count of an array value
    skipped: str = ""


def handler(args: argparse.Namespace) -> int:
    """Entry point of `collector opcua-browse`; returns the exit code."""
    if args.depth < 0:
        print("error: --depth must be 0 or more", file=sys.stderr)
        return 2
    try:
        start = parse_node_id(args.node)
    except ValueError as exc:
        print(f"error: --node {exc}", file=sys.stderr)
        return 2
    try:
        source = OpcUaSourceConfig.model_validate({
            "id": "browse", "protocol": "opcua", "endpoint": args.endpoint, "timeout": args.timeout,
            "security_policy": args.security_policy, "security_mode": args.security_mode,
            "certificate": args.certificate, "private_key": args.private_key,
            "server_certificate": args.server_certificate, "username": args.username,
            "password": args.password if args.password is not None else os.environ.get("OPCUA_PASSWORD"),
        })
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = "--" + str(err["loc"][0]).replace("_", "-") + ": " if err["loc"] else ""
        print(f"error: {where}{err.get('ctx', {}).get('error', err['msg'])}", file=sys.stderr)
        return 2
    # the library's own warnings (session timeouts it adjusted, unknown types) are not the
    # technician's business here; real failures come back as one error line
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"asyncua(\.|$)")
    try:
        return asyncio.run(_browse(source, start, args.depth))
    except KeyboardInterrupt:
        return 130


async def _browse(source: OpcUaSourceConfig, start_ref, depth: int) -> int:
    cert = None
    client = Client(source.endpoint, timeout=source.timeout)
    try:
        if source.security_policy != "None":
            assert source.certificate and source.private_key
            cert = ensure_client_certificate(source.certificate, source.private_key, source.application_uri)
            if cert.generated:
                print(f"# generated client certificate {cert.cert_path} (thumbprint {cert.thumbprint}); "
                      "the server admin must trust it")
        await configure_security(client, source, cert)
        await client.connect()
    except Exception as exc:
        message = describe(exc, source.endpoint, username=source.username, certificate=source.certificate,
                           thumbprint=cert.thumbprint if cert else None, timeout=source.timeout)
        print(f"error: {message}", file=sys.stderr)
        return 1
    try:
        namespaces = await client.get_namespace_array()
        try:
            start = start_ref.resolve(namespaces)
        except LookupError as exc:
            print(f"error: --node: {exc}", file=sys.stderr)
            return 2
        root = await _walk(client, start, depth)
        if root is None:
            print(f"error: node {format_node_id(start)} does not exist on {source.endpoint}", file=sys.stderr)
            return 1
        _print_tree(root, namespaces)
        _print_tags(root)
        return 0
    except Exception as exc:
        print(f"error: {describe(exc, source.endpoint, timeout=source.timeout)}", file=sys.stderr)
        return 1
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 2)
        except Exception:
            client.disconnect_socket()


async def _walk(client: Client, start: ua.NodeId, depth: int) -> Entry | None:
    """Breadth first, one Browse and one Read request per level."""
    node = client.get_node(start)
    (name,) = await client.uaclient.read_attributes([start], ua.AttributeIds.BrowseName)
    if name.StatusCode is not None and not name.StatusCode.is_good() or name.Value is None:
        return None
    (cls,) = await client.uaclient.read_attributes([start], ua.AttributeIds.NodeClass)
    if cls.Value is None:
        return None
    root = Entry(start, name.Value.Value.Name, ua.NodeClass(cls.Value.Value), 0, [])
    level = [root]
    await _describe_variables(client, level)
    while level:
        expand = [e for e in level if e.depth < depth and e.node_class == ua.NodeClass.Object]
        for e in expand:
            if e.node_id == SERVER_OBJECT and e.depth > 0 or (e.node_id == SERVER_OBJECT and start != SERVER_OBJECT):
                e.skipped = "standard server diagnostics; browse them with --node i=2253"
        expand = [e for e in expand if not e.skipped]
        nxt: list[Entry] = []
        for e, (_, result) in zip(expand, await client.browse_nodes([client.get_node(e.node_id) for e in expand]),
                                  strict=True):
            for ref in result.References:
                if not ref.IsForward or ref.NodeClass not in (ua.NodeClass.Object, ua.NodeClass.Variable):
                    continue
                if not _hierarchical(ref.ReferenceTypeId):
                    continue
                nid = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
                child = Entry(nid, ref.BrowseName.Name, ref.NodeClass, e.depth + 1,
                              [*e.path, f"{ref.BrowseName.NamespaceIndex}:{ref.BrowseName.Name}"])
                e.children.append(child)
                nxt.append(child)
        await _describe_variables(client, nxt)
        level = nxt
    del node
    return root


_HIERARCHICAL = {ua.ObjectIds.Organizes, ua.ObjectIds.HasComponent, ua.ObjectIds.HasProperty,
                 ua.ObjectIds.HasChild, ua.ObjectIds.Aggregates, ua.ObjectIds.HierarchicalReferences,
                 ua.ObjectIds.HasOrderedComponent}


def _hierarchical(ref_type: ua.NodeId) -> bool:
    return ref_type.NamespaceIndex != 0 or ref_type.Identifier in _HIERARCHICAL


async def _describe_variables(client: Client, entries: list[Entry]) -> None:
    variables = [e for e in entries if e.node_class == ua.NodeClass.Variable]
    for start in range(0, len(variables), 500):
        batch = variables[start:start + 500]
        ids = [e.node_id for e in batch]
        values = await client.uaclient.read_attributes(ids, ua.AttributeIds.Value)
        types = await client.uaclient.read_attributes(ids, ua.AttributeIds.DataType)
        for e, dv, dt in zip(batch, values, types, strict=True):
            type_id = dt.Value.Value if dt.Value is not None else None
            if isinstance(type_id, ua.NodeId):
                ident = type_id.Identifier
                e.data_type = (ua.ObjectIdNames.get(ident, format_node_id(type_id))
                               if type_id.NamespaceIndex == 0 and isinstance(ident, int)
                               else format_node_id(type_id))
            e.value = _show_value(e, dv)


def _show_value(entry: Entry, dv: ua.DataValue) -> str:
    status = dv.StatusCode
    note = "" if status is None or status.is_good() else f" ({status_name(status)})"
    if status is not None and status.is_bad():
        return note.strip()
    return _show_variant(entry, dv.Value) + note


def _show_variant(entry: Entry, variant: ua.Variant | None) -> str:
    if variant is None:
        return repr(None)
    if isinstance(variant.Value, list):
        entry.array = len(variant.Value)
        shown = ", ".join(repr(v) for v in variant.Value[:8])
        return f"[{shown}{', ...' if entry.array > 8 else ''}] (array of {entry.array})"
    try:
        value = convert(variant, None)
    except ValueProblem:
        return f"({type(variant.Value).__name__}, not storable)"
    return repr(value)


def _print_tree(root: Entry, namespaces: list[str]) -> None:
    print(f"# namespaces: {', '.join(f'{i}={uri}' for i, uri in enumerate(namespaces))}")
    _print_entry(root, "", "", True)


def _print_entry(entry: Entry, prefix: str, branch: str, last: bool) -> None:
    kind = "" if entry.node_class == ua.NodeClass.Object else f"  {entry.data_type} = {entry.value}"
    note = f"  ({entry.skipped})" if entry.skipped else ""
    print(f"{prefix}{branch}{entry.name}  [{format_node_id(entry.node_id)}]{kind}{note}")
    child_prefix = prefix + ("" if not branch else ("   " if last else "│  "))
    for i, child in enumerate(entry.children):
        end = i == len(entry.children) - 1
        _print_entry(child, child_prefix, "└─ " if end else "├─ ", end)


def _print_tags(root: Entry) -> None:
    variables: list[Entry] = []

    def collect(e: Entry) -> None:
        # namespace 0 is the OPC UA standard's own (server status, aliases, diagnostics):
        # shown in the tree, never offered as a machine's tag
        if e.node_class == ua.NodeClass.Variable and e.data_type and "not storable" not in e.value \
                and e.node_id.NamespaceIndex != 0:
            variables.append(e)
        for c in e.children:
            collect(c)

    collect(root)
    if not variables:
        print("\n# no variables below this node; try --depth or another --node")
        return
    print("\n# tag lines to paste under a source's 'tags:' (rename as you like)")
    print("tags:")
    used: set[str] = set()
    for e in variables:
        base = _tag_name(e)
        elements = range(min(e.array, MAX_ELEMENTS)) if e.array else [None]
        for index in elements:
            name = _unique(base if index is None else f"{base}_{index}", used)
            print(f"  - name: {name}")
            print(f"    node: {json.dumps(format_node_id(e.node_id), ensure_ascii=False)}")
            if index is not None:
                print(f"    index: {index}")
        if e.array and e.array > MAX_ELEMENTS:
            print(f"  # ... {e.array - MAX_ELEMENTS} more elements: copy with index: {MAX_ELEMENTS} and up")


def _tag_name(e: Entry) -> str:
    words = [re.sub(r"^\d+:", "", p) for p in e.path[-2:]] or [e.name]
    name = re.sub(r"[^a-z0-9]+", "_", "_".join(words).lower()).strip("_")
    return (name or "tag")[:56]


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}_{n}", n + 1
    used.add(candidate)
    return candidate
