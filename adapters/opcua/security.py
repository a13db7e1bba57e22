"""Client certificates, server certificate pinning and secure-channel setup for one source.

The client certificate is generated once when its files do not exist yet (valid 10 years, so an
unattended box does not stop on a forgotten renewal) and its SHA-1 thumbprint is printed, the
form server admins see in their trust lists. The client's application URI is always read back
from the certificate's subject-alternative-name URI: servers reject a session whose URI differs.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import cert_gen, security_policies, uacrypto
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from .config import OpcUaSourceConfig

log = logging.getLogger(__name__)

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
CERT_DAYS = 3650


class SecuritySetupError(Exception):
    """A certificate or endpoint problem the technician must fix; the message says how."""


@dataclass(frozen=True)
class ClientCertificate:
    cert_path: Path
    key_path: Path
    application_uri: str
    thumbprint: str
    generated: bool


def default_application_uri() -> str:
    return f"urn:{socket.gethostname()}:retrofit-collector"


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER encoding, upper-case hex: what OPC UA servers show in trust lists."""
    return hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest().upper()  # noqa: S324


def load_certificate_file(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The first URI in the certificate's subject alternative names, if any."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def ensure_client_certificate(cert_path: str, key_path: str, application_uri: str | None = None) -> ClientCertificate:
    """Load the client certificate, generating key and certificate if their files are missing."""
    cert_file, key_file = Path(cert_path), Path(key_path)
    generated = False
    if not key_file.exists() or not cert_file.exists():
        if cert_file.exists() != key_file.exists():
            present, missing = (cert_file, key_file) if cert_file.exists() else (key_file, cert_file)
            raise SecuritySetupError(f"{present} exists but {missing} does not; restore {missing}, or delete "
                                     f"{present} to generate a new pair (the server must then trust the new one)")
        uri = application_uri or default_application_uri()
        key = cert_gen.generate_private_key()
        names = [x509.UniformResourceIdentifier(uri), x509.DNSName(socket.gethostname())]
        cert = cert_gen.generate_self_signed_app_certificate(
            key, "retrofit-collector", {}, names, [ExtendedKeyUsageOID.CLIENT_AUTH], days=CERT_DAYS
        )
        for file in (cert_file, key_file):
            file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_bytes(cert_gen.dump_private_key_as_pem(key))
        key_file.chmod(0o600)
        encoding = Encoding.PEM if cert_file.suffix.lower() == ".pem" else Encoding.DER
        cert_file.write_bytes(cert.public_bytes(encoding))
        generated = True
    try:
        cert = load_certificate_file(cert_file)
    except (OSError, ValueError) as exc:
        raise SecuritySetupError(f"cannot read client certificate {cert_file}: {exc}") from None
    cert_uri = application_uri_of(cert)
    if cert_uri is None:
        raise SecuritySetupError(f"client certificate {cert_file} has no application URI in its subject "
                                 "alternative names; servers reject it. Delete it (and its key) to generate one")
    return ClientCertificate(cert_file, key_file, cert_uri, thumbprint(cert), generated)


async def configure_security(client: Client, source: OpcUaSourceConfig, cert: ClientCertificate | None) -> None:
    """Apply security policy, mode, certificates, pinned server certificate and credentials."""
    if source.username:
        client.set_user(source.username)
        if source.password is not None:
            client.set_password(source.password)
    policy_name = source.security_policy
    if policy_name == "None" or cert is None:
        return
    client.application_uri = cert.application_uri
    policy = POLICIES[policy_name]
    mode = MODES[source.message_security_mode]
    endpoints = await client.connect_and_get_server_endpoints()
    endpoint = next((ep for ep in endpoints if ep.SecurityPolicyUri == policy.URI and ep.SecurityMode == mode), None)
    if endpoint is None:
        offered = sorted({f"{ep.SecurityPolicyUri.rsplit('#', 1)[-1]}/{ep.SecurityMode.name.rstrip('_')}" for ep in endpoints})
        raise SecuritySetupError(f"the server offers no endpoint with security_policy {policy_name} and "
                                 f"security_mode {mode.name}; it offers {', '.join(offered)}")
    server_der = _first_certificate(endpoint.ServerCertificate)
    if source.server_certificate:
        server_der = _check_pinned(Path(source.server_certificate), server_der)
    key_format = "pem" if cert.key_path.read_bytes().lstrip().startswith(b"-----BEGIN") else "der"
    await client.set_security(
        policy,
        load_certificate_file(cert.cert_path).public_bytes(Encoding.DER),
        uacrypto.CertProperties(str(cert.key_path), extension=key_format),
        server_certificate=server_der,
        mode=mode,
    )


def _first_certificate(der: bytes | None) -> bytes:
    if not der:
        raise SecuritySetupError("the server's endpoint carries no certificate, so no secure channel is possible")
    length = int.from_bytes(der[2:4], "big") + 4
    return der[:length]


def _check_pinned(path: Path, presented: bytes) -> bytes:
    """Trust on first use: save the server's certificate if the file is missing, else compare."""
    cert = x509.load_der_x509_certificate(presented)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        encoding = Encoding.PEM if path.suffix.lower() == ".pem" else Encoding.DER
        path.write_bytes(cert.public_bytes(encoding))
        log.warning("saved the server certificate (thumbprint %s) to %s; it is trusted from now on",
                    thumbprint(cert), path)
        return presented
    try:
        trusted = load_certificate_file(path)
    except (OSError, ValueError) as exc:
        raise SecuritySetupError(f"cannot read server_certificate {path}: {exc}") from None
    if trusted.public_bytes(Encoding.DER) != presented:
        raise SecuritySetupError(
            f"the server presents certificate {thumbprint(cert)} but {path} trusts {thumbprint(trusted)}; "
            f"if the server's certificate was renewed on purpose, delete {path} to trust the new one")
    return presented
