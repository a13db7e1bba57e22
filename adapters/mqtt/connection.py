"""Building an aiomqtt client from a source config, and explaining why a connection failed.

Two things aiomqtt 2.5 leaves to us live here as well: manual acknowledgement (paho's
`manual_ack_set`/`ack`, reached through the client aiomqtt wraps) and a read buffer under
paho, which otherwise issues three `recv` calls and one event-loop turn per message.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttCodeError, MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .config import MqttSourceConfig

READ_CHUNK = 32 * 1024  # ~600 small messages: enough to amortise a loop turn, short enough not to stall it

# MQTT 3.1.1 CONNACK return codes and MQTT 5 reason codes a technician can act on
_REFUSED = {
    1: "the broker does not speak this MQTT version (try version: \"5\" or \"3.1.1\")",
    2: "the broker rejected the client id (set client_id to a shorter plain name)",
    3: "the broker is unavailable",
    4: "bad username or password (check username and password)",
    5: "not authorised: wrong username or password, or the broker does not allow this client (check username, password and client_id)",
    128: "the broker refused the connection (unspecified error)",
    132: "the broker does not speak this MQTT version (try version: \"3.1.1\")",
    133: "the broker rejected the client id (set client_id to a shorter plain name)",
    134: "bad username or password (check username and password)",
    135: "not authorised: wrong username or password, or the broker does not allow this client (check username, password and client_id)",
    136: "the broker is unavailable",
    137: "the broker is busy",
    138: "this client is banned by the broker",
    140: "the broker wants another authentication method",
    149: "the broker refuses packets this large",
    151: "the broker's quota is exceeded",
    156: "the broker redirects to another server (use that one as broker)",
    157: "the broker has moved (use the new address as broker)",
}

# reasons a broker gives (MQTT 5 DISCONNECT) or paho reports for a connection that was up
_DROPPED = {
    128: "the broker closed it or the network dropped",
    135: "not authorised (the broker's ACL changed?)",
    137: "the broker is busy",
    139: "the broker is shutting down",
    141: "keep-alive timeout (network too slow or keepalive too short)",
    142: "another client connected with the same client_id (give each collector its own)",
    149: "a packet was too large for the broker",
    151: "the broker's quota is exceeded",
    152: "the broker's administrator disconnected this client",
}


class BufferedSocket:
    """Reads the socket in large chunks and hands paho the small pieces it asks for.

    `pending()` tells aiomqtt's reader callback that more whole packets are already buffered,
    so one readable event drains a burst instead of one message per event-loop turn. At most
    one chunk is read from the OS per turn, so a steady stream cannot starve other tasks
    (the ledger writer among them); the rest waits for the next readable event."""

    __slots__ = ("_sock", "_buf", "_pos", "_loop", "_refilled", "_inner_pending")

    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop):
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._loop = loop
        self._refilled = False
        self._inner_pending = getattr(sock, "pending", None)  # TLS: decrypted bytes held by ssl

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buf):
            held = self._inner_pending() if self._inner_pending is not None else 0
            if self._refilled and not held:
                raise BlockingIOError  # paho keeps its partial packet and returns; epoll fires again
            data = self._sock.recv(max(size, READ_CHUNK))
            if not data:
                return data
            self._buf, self._pos = data, 0
            if not self._refilled:
                self._refilled = True
                self._loop.call_soon(self._next_turn)
        out = self._buf[self._pos:self._pos + size]
        self._pos += len(out)
        return out

    def _next_turn(self) -> None:
        self._refilled = False

    def pending(self) -> int:
        held = self._inner_pending() if self._inner_pending is not None else 0
        return len(self._buf) - self._pos + held

    def send(self, data: bytes) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def paho_of(client: aiomqtt.Client) -> paho.Client:
    """The paho client inside aiomqtt (aiomqtt 2.5 has no public ack API)."""
    return client._client  # noqa: SLF001


def buffer_reads(client: aiomqtt.Client) -> bool:
    """Put a `BufferedSocket` under paho once connected; False when paho's internals differ."""
    inner = paho_of(client)
    sock = getattr(inner, "_sock", None)
    if sock is None or isinstance(sock, BufferedSocket) or not hasattr(sock, "recv"):
        return False
    inner._sock = BufferedSocket(sock, asyncio.get_running_loop())  # type: ignore[assignment]  # noqa: SLF001
    return True


def tls_context(cfg: MqttSourceConfig) -> ssl.SSLContext:
    """The TLS context of an mqtts:// source; OSError/ssl.SSLError name the file at fault."""
    for field in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, field)
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, f"{field} {path!r} not found; check the path", path)
    context = ssl.create_default_context(cafile=cfg.ca_file)
    if cfg.cert_file:
        try:
            context.load_cert_chain(cfg.cert_file, cfg.key_file, cfg.key_password)
        except ssl.SSLError as exc:
            raise ssl.SSLError(f"cannot load cert_file/key_file ({exc.reason or exc}); is the key "
                               "the certificate's, and key_password right?") from None
    if cfg.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def make_client(cfg: MqttSourceConfig, machine: str, queue_type: type[Any] | None = None,
                client_id: str | None = None, logger: logging.Logger | None = None) -> aiomqtt.Client:
    """An aiomqtt client for one connection attempt (a fresh one per attempt keeps no stale state)."""
    v5 = cfg.version == "5"
    kwargs: dict[str, Any] = {}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = cfg.max_inflight
        props.SessionExpiryInterval = int(min(cfg.session_expiry, 0xFFFFFFFF)) if cfg.persistent else 0
        kwargs["properties"] = props
        kwargs["clean_start"] = not cfg.persistent
    else:
        kwargs["clean_session"] = not cfg.persistent
    if cfg.tls:
        kwargs["tls_context"] = tls_context(cfg)
        if cfg.tls_insecure:
            kwargs["tls_insecure"] = True
    client = aiomqtt.Client(
        cfg.host,
        cfg.port,
        username=cfg.username,
        password=cfg.password,
        identifier=client_id or cfg.effective_client_id(machine),
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        keepalive=int(cfg.keepalive),
        timeout=cfg.timeout,
        queue_type=queue_type,
        logger=logger,
        **kwargs,
    )
    paho_of(client).connect_timeout = cfg.timeout
    return client


def reason_text(rc: Any, table: dict[int, str] = _REFUSED) -> str:
    """A CONNACK/DISCONNECT code as words a technician can act on."""
    value = getattr(rc, "value", rc)
    if isinstance(value, int) and value in table:
        return table[value]
    if isinstance(value, int) and not hasattr(rc, "value"):
        return paho.error_string(value)
    return str(rc)


class ErrorRecorder(logging.Handler):
    """Keeps paho's last socket error: a TLS alert after the handshake (TLS 1.3 client
    certificate refused) shows only there, while the connect itself just times out."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


def paho_logger(machine: str, source: str) -> tuple[logging.Logger, ErrorRecorder]:
    """A logger for paho's messages of one source, with an `ErrorRecorder` on it."""
    logger = logging.getLogger(f"adapters.mqtt.paho.{machine}.{source}")
    logger.setLevel(logging.WARNING)
    for handler in list(logger.handlers):
        if isinstance(handler, ErrorRecorder):
            logger.removeHandler(handler)
    recorder = ErrorRecorder()
    logger.addHandler(recorder)
    return logger, recorder


def explain(exc: BaseException, cfg: MqttSourceConfig, socket_error: str | None = None) -> str:
    """One line saying what went wrong with the broker and what to change."""
    where = cfg.broker
    if socket_error and "timed out" in str(exc).lower():
        return explain(OSError(socket_error), cfg)
    if isinstance(exc, MqttConnectError):
        return f"broker {where} refused the connection: {reason_text(exc.rc)}"
    if isinstance(exc, FileNotFoundError):
        return f"TLS for {where}: {exc.strerror}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS for {where}: {exc.args[0] if exc.args else exc}"
    if isinstance(exc, MqttCodeError):
        return f"connection to {where} lost: {reason_text(exc.rc, _DROPPED)}"
    text = str(exc)
    cause = exc.__cause__
    if "Disconnected during message iteration" in text and cause is not None:
        return explain(cause, cfg)
    lowered = text.lower()
    if "certificate required" in lowered or "certificate_required" in lowered:
        return f"TLS for {where}: the broker requires a client certificate (set cert_file and key_file)"
    if "unknown ca" in lowered or "bad certificate" in lowered or "certificate unknown" in lowered:
        return (f"TLS for {where}: the broker does not accept our client certificate (is cert_file "
                "signed by a CA the broker trusts?)")
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        detail = text.split("certificate verify failed:")[-1].split("(_ssl")[0].strip(" :")
        return (f"TLS for {where}: the broker's certificate is not trusted ({detail}); set ca_file "
                "to the CA that signed it")
    if "hostname" in lowered and ("mismatch" in lowered or "match" in lowered):
        return (f"TLS for {where}: the broker's certificate is not for host {cfg.host!r}; use the "
                "name in the certificate as broker host")
    if "wrong version number" in lowered or "unexpected eof" in lowered or "ssl" in lowered:
        return f"TLS for {where} failed ({text}); is this port really mqtts, and the broker's TLS set up?"
    if "refused" in lowered:
        return f"cannot connect to {where}: connection refused (is the broker running on that port?)"
    if "name or service not known" in lowered or "nodename nor servname" in lowered \
            or "temporary failure in name resolution" in lowered:
        return f"cannot connect to {where}: host {cfg.host!r} not found (check the broker address)"
    if "timed out" in lowered:
        return f"no answer from {where} within {cfg.timeout:g} s (check the address, port and firewall)"
    if "unreachable" in lowered:
        return f"cannot connect to {where}: network unreachable (check cabling and address)"
    return f"connection to {where} failed: {type(exc).__name__}: {text}"
