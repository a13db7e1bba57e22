"""Exceptions from asyncua and the network turned into one line a technician can act on."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlparse

from asyncua import ua
from asyncua.ua import status_codes

from .security import SecuritySetupError

_CERT_REJECTED = {
    "BadCertificateUntrusted", "BadSecurityChecksFailed", "BadCertificateInvalid",
    "BadCertificateRevoked", "BadCertificateIssuerRevoked", "BadCertificateUseNotAllowed",
    "BadCertificateHostNameInvalid", "BadCertificateRevocationUnknown",
}  # fmt: skip


class ConnectionLost(Exception):
    """The session stopped answering (socket closed, keepalive missed, subscription gone)."""


def describe(exc: BaseException, endpoint: str, *, username: str | None = None,
             certificate: str | None = None, thumbprint: str | None = None, timeout: float = 0) -> str:
    """One line saying what went wrong with the endpoint and what to change."""
    if isinstance(exc, SecuritySetupError | ConnectionLost):
        return str(exc)
    if isinstance(exc, ua.UaStatusCodeError):
        return _describe_status(exc.code, endpoint, username, certificate, thumbprint)
    url = urlparse(endpoint)
    where = f"{url.hostname}:{url.port or 4840}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}; is the OPC UA server running and is the port in 'endpoint' right?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {url.hostname!r} of {endpoint}; check 'endpoint'"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"no answer from {endpoint} within {timeout:g}s; check the network, or raise 'timeout'"
    if isinstance(exc, OSError | ConnectionError):
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
        return f"connection to {where} failed: {reason}"
    if isinstance(exc, ua.UaError) and "certificate mismatch" in str(exc).lower():
        return "the server's certificate changed during the connection; check 'server_certificate'"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _describe_status(code: int, endpoint: str, username: str | None,
                     certificate: str | None, thumbprint: str | None) -> str:
    name, doc = status_codes.get_name_and_doc(code)
    if name == "BadUserAccessDenied":
        if username:
            return (f"the server rejected the login of user {username!r} (BadUserAccessDenied); "
                    "check 'username' and 'password'")
        return ("the server refuses anonymous sessions (BadUserAccessDenied); set 'username' and 'password'")
    if name in ("BadIdentityTokenRejected", "BadIdentityTokenInvalid"):
        kind = "username/password" if username else "anonymous"
        return (f"the server does not accept {kind} login on this endpoint ({name}); "
                "change 'username'/'password' or the security settings")
    if name in _CERT_REJECTED:
        cert = f" {certificate}" if certificate else ""
        thumb = f" (thumbprint {thumbprint})" if thumbprint else ""
        return (f"the server does not trust our client certificate{cert}{thumb} ({name}); "
                "ask the server admin to move it to the server's trusted certificates")
    if name == "BadCertificateUriInvalid":
        return ("the server rejects our certificate's application URI (BadCertificateUriInvalid); "
                "delete the certificate and key files to generate a new pair, or set 'application_uri'")
    if name == "BadCertificateTimeInvalid":
        return f"the client certificate {certificate} is expired or not yet valid (BadCertificateTimeInvalid)"
    if name in ("BadSecurityPolicyRejected", "BadSecurityModeRejected"):
        return f"the server rejects this security_policy/security_mode ({name}); run `collector opcua-browse` to list its endpoints"
    if name == "BadTooManySessions":
        return "the server has no free session (BadTooManySessions); close other clients or raise the server's limit"
    if name in ("BadTimeout", "BadRequestTimeout"):
        return f"the server at {endpoint} did not answer in time ({name})"
    return f"the server answered {name}: {doc}" if doc else f"the server answered {name}"
