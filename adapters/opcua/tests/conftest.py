"""A real asyncua server for the tests, running in its own thread and event loop.

The server lives in a thread so that a module-scoped fixture can share it between tests
(pytest-asyncio gives every test its own loop); tests reach it through `await srv.call(fn)`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.user_managers import UserManager
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from adapters.opcua.nodeid import node_id
from collector.model import Reading
from tests.conftest import free_port  # noqa: F401  (shared by this folder's tests)

NS_URI = "urn:retrofit:test"
SERVER_URI = "urn:retrofit:test:server"
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




class UserPasswordManager(UserManager):
    def __init__(self, users: dict[str, str]):
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username in self.users and self.users[username] == password:
            return User(role=UserRole.User, name=username)
        return None


def make_certificate(directory: Path, name: str, uri: str, server: bool) -> tuple[Path, Path]:
    key = cert_gen.generate_private_key()
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    from cryptography import x509

    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")], use)
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


class OpcTestServer:
    """An asyncua server with one variable per scalar type and a few special nodes."""

    def __init__(self, port: int | None = None, *, security: dict[str, Any] | None = None,
                 extra: int = 0):
        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}"
        self.security = security
        self.extra = extra
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server | None = None
        self.idx = 2
        self.nodes: dict[str, Any] = {}

    def run(self, fn: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    async def call(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """From a test's own loop: run `fn()` in the server's loop and wait for it."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(), self.loop))

    def start(self) -> None:
        self.run(self._start)

    def stop(self) -> None:
        if self.server is not None:
            self.run(self._stop)

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def _start(self) -> None:
        server = Server(user_manager=UserPasswordManager(self.security["users"]) if self.security else None)
        await server.init()
        server.disable_clock()
        server.set_endpoint(self.url)
        await server.set_application_uri(SERVER_URI)
        if self.security:
            await server.load_certificate(str(self.security["cert"]))
            await server.load_private_key(str(self.security["key"]))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                                        ua.SecurityPolicyType.Basic256Sha256_Sign])
            server.set_identity_tokens([ua.UserNameIdentityToken])
            store = TrustStore([Path(self.security["trusted"])], [])
            await store.load()
            server.set_certificate_validator(CertificateValidator(
                CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store))
        idx = await server.register_namespace(NS_URI)
        self.idx = idx
        press = await server.nodes.objects.add_object(node_id("Press07", idx), ua.QualifiedName("Press07", idx))
        for name, (vtype, value) in SCALARS.items():
            self.nodes[name] = await press.add_variable(
                node_id(f"Press07.{name}", idx), ua.QualifiedName(name, idx), ua.Variant(value, vtype))
        n = self.nodes
        n["Temperature"] = await press.add_variable(node_id(42, idx), ua.QualifiedName("Temperature", idx),
                                                    ua.Variant(20.5, ua.VariantType.Double))
        n["ByGuid"] = await press.add_variable(node_id(GUID, idx, ua.NodeIdType.Guid),
                                               ua.QualifiedName("ByGuid", idx), ua.Variant(7, ua.VariantType.Int32))
        n["Opaque"] = await press.add_variable(node_id(OPAQUE, idx, ua.NodeIdType.ByteString),
                                               ua.QualifiedName("Opaque", idx), ua.Variant(8, ua.VariantType.Int32))
        n["Array"] = await press.add_variable(node_id("Press07.Array", idx), ua.QualifiedName("Array", idx),
                                              ua.Variant([10, 20, 30], ua.VariantType.Int32))
        n["Broken"] = await press.add_variable(node_id("Press07.Broken", idx), ua.QualifiedName("Broken", idx),
                                               ua.Variant(1.0, ua.VariantType.Double))
        n["Doubtful"] = await press.add_variable(node_id("Press07.Doubtful", idx),
                                                 ua.QualifiedName("Doubtful", idx), ua.Variant(3.25, ua.VariantType.Double))
        n["Counter"] = await press.add_variable(node_id("Press07.Counter", idx), ua.QualifiedName("Counter", idx),
                                                ua.Variant(0, ua.VariantType.Int32))
        for i in range(self.extra):
            n[f"X{i}"] = await press.add_variable(node_id(f"X{i}", idx), ua.QualifiedName(f"X{i}", idx),
                                                  ua.Variant(0.0, ua.VariantType.Double))
        # asyncua annotates these fields with its wire types (UInt32, DateTime) but takes an int
        # and a datetime, as its own StatusCodes are
        await server.write_attribute_value(n["Broken"].nodeid, ua.DataValue(
            StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure)))  # type: ignore[arg-type]
        await server.write_attribute_value(n["Doubtful"].nodeid, ua.DataValue(
            Value=ua.Variant(3.25, ua.VariantType.Double), SourceTimestamp=STAMP,  # type: ignore[arg-type]
            StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)))  # type: ignore[arg-type]
        await server.start()
        self.server = server

    async def write(self, name: str, value: Any, vtype: ua.VariantType | None = None) -> None:
        """Set a variable (from the test loop)."""
        node = self.nodes[name]

        async def go() -> None:
            await node.write_value(ua.Variant(value, vtype) if vtype else value)

        await self.call(go)


class ListSink:
    """Collects what an adapter hands over; stands in for the pipeline."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []

    async def put(self, readings: Sequence[Reading], *, wait: bool = False) -> None:
        self.readings.extend(readings)

    def of(self, tag: str) -> list[Reading]:
        return [r for r in self.readings if r.tag == tag]

    def last(self, tag: str) -> Reading:
        """The newest reading of `tag`; wait for one with `until(lambda: sink.of(tag))`."""
        rs = self.of(tag)
        assert rs, f"no reading of {tag!r} yet"
        return rs[-1]


async def until(cond: Callable[[], Any], limit: float = 15.0, what: str = "condition") -> Any:
    """Poll `cond` until it is truthy (robust on a loaded machine), else fail the test."""
    deadline = time.monotonic() + limit
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def opc_server() -> Any:
    srv = OpcTestServer()
    srv.start()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _quiet_asyncua() -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)


def source_config(url: str, tags: list[dict[str, Any]], **options: Any) -> Any:
    from adapters.opcua.config import OpcUaSourceConfig

    data = {"id": "hmi", "protocol": "opcua", "endpoint": url, "interval": "100ms", "tags": tags}
    data.update(options)
    return OpcUaSourceConfig.model_validate(data)


class Running:
    """Runs an OpcUaAdapter in a task for the duration of an `async with`."""

    def __init__(self, source: Any, machine: str = "press07"):
        from adapters.base import AdapterContext
        from adapters.opcua.adapter import OpcUaAdapter
        from collector.config import MachineConfig
        from collector.model import SourceHealth

        self.sink = ListSink()
        self.health = SourceHealth(machine, source.id, "opcua")
        self.ctx = AdapterContext(MachineConfig(id=machine), source, self.sink, self.health)
        self.adapter = OpcUaAdapter(self.ctx)
        self.task: asyncio.Task[None] | None = None

    @property
    def last_error(self) -> str:
        """The source's last error (fails the test when there is none)."""
        error = self.health.last_error
        assert error is not None, "no error reported"
        return error

    def per_tag(self, detail: str) -> dict[str, str]:
        """A per-tag detail of the source's health: `tag_status` or `tag_errors`."""
        found = self.health.extra.get(detail, {})
        assert isinstance(found, dict), found
        return found

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.adapter.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        if self.task.done() and not self.task.cancelled() and self.task.exception():
            raise self.task.exception()  # type: ignore[misc]
        self.task.cancel()
        try:
            await asyncio.wait_for(self.task, 10)
        except asyncio.CancelledError:
            pass
