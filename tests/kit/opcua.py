"""OPC UA peers: a real asyncua server in a thread of its own, filled with nodes by a builder
(the adapter tests' Press07 set, or a case's device.yaml), with certificates and user logins
for the security tests.

The server lives in a thread so that a module-scoped fixture can share it between tests
(pytest-asyncio gives every test its own loop); tests reach it through `await srv.call(fn)`.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from .ports import free_port

NS_URI = "urn:retrofit:test"
SERVER_URI = "urn:retrofit:test:server"

# fills a started-but-not-listening server; returns its variables by name
NodeBuilder = Callable[[Server, int], Awaitable[dict[str, Node]]]


class UserPasswordManager(UserManager):
    def __init__(self, users: dict[str, str]):
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username in self.users and self.users[username] == password:
            return User(role=UserRole.User, name=username)
        return None


def make_certificate(directory: Path, name: str, uri: str, server: bool) -> tuple[Path, Path]:
    """A self-signed application certificate (DER) and its key (PEM) for `uri`."""
    key = cert_gen.generate_private_key()
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")], use)
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


class OpcServer:
    """An asyncua server on a free port, holding the nodes `build` adds to namespace NS_URI;
    `security` (cert, key, trusted, users) turns on Basic256Sha256 with user logins."""

    def __init__(self, build: NodeBuilder, port: int | None = None, *,
                 security: dict[str, Any] | None = None):
        self.build = build
        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}"
        self.security = security
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server | None = None
        self.idx = 2
        self.nodes: dict[str, Node] = {}

    def run(self, fn: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    async def call(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """From a test's own loop: run `fn()` in the server's loop and wait for it."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(), self.loop))

    def start(self) -> OpcServer:
        self.run(self._start)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.run(self._stop)

    def close(self) -> None:
        """Stop the server and its thread."""
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def _start(self) -> None:
        security = self.security
        server = Server(user_manager=UserPasswordManager(security["users"]) if security else None)
        await server.init()
        server.disable_clock()
        server.set_endpoint(self.url)
        await server.set_application_uri(SERVER_URI)
        if security:
            await server.load_certificate(str(security["cert"]))
            await server.load_private_key(str(security["key"]))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                                        ua.SecurityPolicyType.Basic256Sha256_Sign])
            server.set_identity_tokens([ua.UserNameIdentityToken])
            store = TrustStore([Path(security["trusted"])], [])
            await store.load()
            server.set_certificate_validator(CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store))
        self.idx = await server.register_namespace(NS_URI)
        self.nodes = await self.build(server, self.idx)
        await server.start()
        self.server = server

    async def write(self, name: str, value: Any, vtype: ua.VariantType | None = None) -> None:
        """Set a variable (from the test loop)."""
        node = self.nodes[name]

        async def go() -> None:
            await node.write_value(ua.Variant(value, vtype) if vtype else value)

        await self.call(go)


# --- the nodes a device.yaml describes --------------------------------------------------------

def _value(vtype: ua.VariantType, value: Any) -> Any:
    """A YAML value as asyncua wants it for `vtype` (lists element by element)."""
    if isinstance(value, list):
        return [_value(vtype, v) for v in value]
    if vtype is ua.VariantType.DateTime:
        return value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if vtype is ua.VariantType.LocalizedText:
        return ua.LocalizedText(value, "en")
    if vtype is ua.VariantType.ByteString:
        return bytes.fromhex(value)
    if vtype is ua.VariantType.Guid:
        return uuid.UUID(value)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    return value


def nodes_of(device: Mapping[str, Any]) -> NodeBuilder:
    """A builder for the nodes `device` describes: `objects`, each with a `name` and
    `variables` of `{name, id (as after 'ns=N;', e.g. i=42 or s=Press07.Counter), type (an OPC
    UA built-in type name), value, status (a StatusCode name), source_timestamp}`."""

    async def build(server: Server, idx: int) -> dict[str, Node]:
        nodes: dict[str, Node] = {}
        for obj in device.get("objects", []):
            parent = await server.nodes.objects.add_object(
                ua.NodeId.from_string(f"ns={idx};{obj.get('id', 's=' + obj['name'])}"),
                ua.QualifiedName(obj["name"], idx))
            for var in obj.get("variables", []):
                vtype = getattr(ua.VariantType, var["type"])
                node = await parent.add_variable(
                    ua.NodeId.from_string(f"ns={idx};{var['id']}"),
                    ua.QualifiedName(var["name"], idx),
                    ua.Variant(_value(vtype, var.get("value")), vtype))
                if "status" in var or "source_timestamp" in var:
                    stamp = var.get("source_timestamp")
                    await server.write_attribute_value(node.nodeid, ua.DataValue(
                        Value=ua.Variant(_value(vtype, var.get("value")), vtype),
                        SourceTimestamp=_value(ua.VariantType.DateTime, stamp) if stamp else None,
                        StatusCode=ua.StatusCode(getattr(ua.StatusCodes, var.get("status", "Good")))))
                nodes[var["name"]] = node
        return nodes

    return build

