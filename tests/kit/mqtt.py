"""MQTT peers: the machine's shared Mosquitto, Mosquittos of a test's own (TLS, passwords,
restarts) and a publisher that is a different client than the one under test.

Every broker a test starts listens on 127.0.0.1 on a free port and is stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .ports import free_port, port_open
from .programs import need_program

SHARED_BROKER = "127.0.0.1"
SHARED_PORT = 1883


class Mosquitto:
    """A broker process of the test's own; `stop()` / `start()` again on the same port."""

    def __init__(self, workdir: Path, *, persistence: bool = False, extra: Iterable[str] = (),
                 port: int | None = None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # `user root`: stay the user that started it, so it can read the test's temp files
        lines = ["user root", f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 f"persistence {'true' if persistence else 'false'}",
                 f"persistence_location {self.dir}/", "max_queued_messages 100000",
                 "autosave_interval 1", *extra]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, within: float = 10.0) -> Mosquitto:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([need_program("mosquitto", "mosquitto"), "-c", str(self.conf)],
                                     stdout=out, stderr=out)
        deadline = time.monotonic() + within
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start listening")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM by PID (mosquitto saves its persistence file on the way out)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def make_certs(folder: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A CA, a server certificate for `host` and a client certificate, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    p = {name: folder / name for name in (
        "ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "client.key",
        "client.csr", "client.crt", "ext.cnf")}

    def run(*args: str) -> None:
        subprocess.run([need_program("openssl", "openssl"), *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(p["ca.key"]), "-out", str(p["ca.crt"]))
    p["ext.cnf"].write_text(f"subjectAltName=IP:{host},DNS:localhost\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
            "-keyout", str(p[f"{who}.key"]), "-out", str(p[f"{who}.csr"]))
        extra = ["-extfile", str(p["ext.cnf"])] if who == "server" else []
        run("x509", "-req", "-in", str(p[f"{who}.csr"]), "-CA", str(p["ca.crt"]), "-CAkey",
            str(p["ca.key"]), "-CAcreateserial", "-days", "2", "-out", str(p[f"{who}.crt"]), *extra)
    return p


class Publisher:
    """A blocking paho publisher (a different client than the one under test)."""

    def __init__(self, port: int = SHARED_PORT, version: paho.MQTTProtocolVersion = paho.MQTTv311):
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=version)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str | float | None, qos: int = 1,
                retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(10)

    def publish_many(self, items: Iterable[tuple[str, bytes | str]], qos: int = 1) -> int:
        """Publish all, then wait until the broker has every QoS >= 1 message."""
        infos = [self.client.publish(topic, payload, qos=qos) for topic, payload in items]
        for info in infos:
            if qos:
                info.wait_for_publish(30)
        return len(infos)

    def close(self) -> None:
        self.client.disconnect()  # first: it wakes the network thread, so loop_stop is quick
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
