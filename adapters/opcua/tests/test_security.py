"""Basic256Sha256 with certificates and username login, and the errors a technician sees."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.opcua.security import (
    ClientCertificate,
    application_uri_of,
    ensure_client_certificate,
    load_certificate_file,
)
from tests.kit.opcua import SERVER_URI, make_certificate
from tests.kit.waiting import wait_for

from .conftest import Running, source_config
from .press07 import press07_server

USERS = {"operator": "s3cret"}


@dataclass
class SecureServer:
    url: str
    client: ClientCertificate  # trusted by the server


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    base = tmp_path_factory.mktemp("pki")
    trusted = base / "trusted"
    trusted.mkdir()
    server_cert, server_key = make_certificate(base, "server", SERVER_URI, server=True)
    client = ensure_client_certificate(str(base / "client.der"), str(base / "client-key.pem"),
                                       "urn:test:collector")
    shutil.copy(client.cert_path, trusted / "client.der")
    srv = press07_server(security={"cert": server_cert, "key": server_key, "trusted": trusted, "users": USERS})
    srv.start()
    yield SecureServer(srv.url, client)
    srv.close()


def secure_source(srv, tmp: Path, **options):
    settings = {
        "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt",
        "certificate": str(srv.client.cert_path), "private_key": str(srv.client.key_path),
        "server_certificate": str(tmp / "pinned-server.der"),
        "username": "operator", "password": "s3cret",
    }
    settings.update(options)
    return source_config(srv.url, [{"name": "temperature", "node": "ns=2;i=42"},
                                   {"name": "counter", "node": "ns=2;s=Press07.Counter"}], **settings)


@pytest.mark.parametrize("mode", ["SignAndEncrypt", "Sign"])
async def test_secure_session_with_certificate_and_username(secure, tmp_path: Path, mode: str) -> None:
    async with Running(secure_source(secure, tmp_path, security_mode=mode)) as run:
        await wait_for(lambda: run.sink.of("temperature"), what="a value over the secure channel")
        assert run.sink.last("temperature").value == 20.5
        assert run.health.connected and run.health.last_error is None
    pinned = load_certificate_file(tmp_path / "pinned-server.der")
    assert application_uri_of(pinned) == SERVER_URI  # trusted on first use, kept for next time


async def test_wrong_password_is_named(secure, tmp_path: Path) -> None:
    async with Running(secure_source(secure, tmp_path, password="wrong")) as run:
        await wait_for(lambda: run.health.last_error, what="an error")
        assert run.health.last_error == (
            "machine press07, source hmi: the server rejected the login of user 'operator' "
            "(BadUserAccessDenied); check 'username' and 'password'")
        assert not run.health.connected
        assert run.sink.last("temperature").quality.name == "BAD"  # a gap, once
        assert len(run.sink.of("temperature")) == 1


async def test_untrusted_certificate_is_named_with_its_thumbprint(secure, tmp_path: Path, capsys) -> None:
    cert, key = tmp_path / "new" / "client.der", tmp_path / "new" / "client-key.pem"
    source = secure_source(secure, tmp_path, certificate=str(cert), private_key=str(key))
    async with Running(source) as run:
        await wait_for(lambda: run.health.last_error, what="an error")
        assert run.adapter.cert is not None
        thumb = run.adapter.cert.thumbprint
        assert run.health.last_error == (
            f"machine press07, source hmi: the server does not trust our client certificate {cert} "
            f"(thumbprint {thumb}) (BadCertificateUntrusted); ask the server admin to move it to the "
            "server's trusted certificates")
    assert cert.exists() and key.exists()  # generated once, kept
    printed = capsys.readouterr().out
    assert f"generated client certificate {cert} (thumbprint {thumb}" in printed
    assert (application_uri_of(load_certificate_file(cert)) or "").endswith(":retrofit-collector")


async def test_pinned_server_certificate_mismatch_is_refused(secure, tmp_path: Path) -> None:
    other, _ = make_certificate(tmp_path, "impostor", SERVER_URI, server=True)
    source = secure_source(secure, tmp_path, server_certificate=str(other))
    async with Running(source) as run:
        await wait_for(lambda: run.health.last_error, what="an error")
        assert "the server presents certificate" in run.last_error
        assert f"delete {other} to trust the new one" in run.last_error


async def test_missing_endpoint_lists_what_the_server_offers(secure, tmp_path: Path) -> None:
    source = secure_source(secure, tmp_path, security_policy="Aes256_Sha256_RsaPss")
    async with Running(source) as run:
        await wait_for(lambda: run.health.last_error, what="an error")
        assert "no endpoint with security_policy Aes256_Sha256_RsaPss" in run.last_error
        assert "Basic256Sha256/SignAndEncrypt" in run.last_error


def test_certificate_is_generated_once(tmp_path: Path) -> None:
    first = ensure_client_certificate(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), "urn:box:1")
    again = ensure_client_certificate(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"), "urn:other")
    assert first.generated and not again.generated
    assert first.thumbprint == again.thumbprint and len(first.thumbprint) == 40
    assert again.application_uri == "urn:box:1"  # always the certificate's own URI
    assert (tmp_path / "c.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")


def test_browse_with_security_options(secure, tmp_path: Path, capsys) -> None:
    from .test_browse import run_browse

    common = ["--endpoint", secure.url, "--security-policy", "Basic256Sha256",
              "--certificate", str(secure.client.cert_path), "--private-key", str(secure.client.key_path),
              "--username", "operator", "--node", "ns=2;s=Press07", "--depth", "1"]
    code, out, err = run_browse(capsys, *common, "--password", "s3cret")
    assert code == 0, err
    assert "Temperature  [ns=2;i=42]  Double = 20.5" in out
    code, out, err = run_browse(capsys, *common, "--password", "nope")
    assert code == 1 and out == ""
    assert err == ("error: the server rejected the login of user 'operator' (BadUserAccessDenied); "
                   "check 'username' and 'password'\n")
