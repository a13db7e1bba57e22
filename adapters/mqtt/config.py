"""The YAML of an MQTT source and its tags, checked before the broker is touched.

Broker URL, TLS files only with `mqtts://`, topic templates (`plant1/+/{machine}/{tag}`),
tag name templates using only names the topic binds, JSON paths and the value type are all
validated here, each problem reported at its own field with the fix said.
"""

from __future__ import annotations

import socket
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from collector.config import ByteSize, Duration, SourceConfig, TagConfig
from collector.sources.problems import Problems, raise_problems

from .payload import TimestampUnit, ValueType, parse_path
from .topics import TopicTemplate, name_variables, parse_topic

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class MqttTagConfig(TagConfig):
    """One value taken from the messages on a topic (or a family of topics)."""

    # a plain tag name, or a template such as "{tag}" / "temp_{probe}" bound by the topic
    name: str = Field(min_length=1, max_length=64)
    topic: str
    json_path: str | None = Field(None, alias="json")  # dotted path into a JSON payload
    timestamp: str | None = None  # dotted path to the device time in the JSON payload
    timestamp_unit: TimestampUnit = "auto"  # for numeric timestamps; auto tells s/ms/µs apart
    type: ValueType = "number"

    model_config = {**TagConfig.model_config, "populate_by_name": True}

    @cached_property
    def template(self) -> TopicTemplate:
        return parse_topic(self.topic)

    @property
    def is_template(self) -> bool:
        """The tag's machine or name comes from the topic, so it is only known at run time."""
        return "{" in self.name or "machine" in self.template.variables

    @model_validator(mode="after")
    def _check(self) -> MqttTagConfig:
        problems: Problems = []
        bound: tuple[str, ...] = ()
        try:
            bound = parse_topic(self.topic).variables
        except ValueError as exc:
            problems.append(("topic", str(exc), self.topic))
        try:
            used = name_variables(self.name)
        except ValueError as exc:
            problems.append(("name", str(exc), self.name))
            used = []
        for var in used:
            if var not in bound:
                problems.append(("name", f"tag name {self.name!r} uses {{{var}}} but topic "
                                 f"{self.topic!r} binds no level named {{{var}}}; add it to the "
                                 "topic (e.g. plant1/+/{" + var + "}) or remove it from the name",
                                 self.name))
        if "tag" in bound and not used:
            problems.append(("name", f"topic {self.topic!r} binds {{tag}} but the name "
                             f"{self.name!r} does not use it; write name: \"{{tag}}\"", self.name))
        for field, path in (("json", self.json_path), ("timestamp", self.timestamp)):
            if path is not None:
                try:
                    parse_path(path)
                except ValueError as exc:
                    problems.append((field, str(exc), path))
        if self.timestamp is not None and self.json_path is None:
            problems.append(("timestamp", "a timestamp path needs a JSON payload: also set "
                             "json to the path of the value (json: \"$\" for the whole document)",
                             self.timestamp))
        if self.type in ("bool", "text"):
            for field in self.normalising:
                problems.append((field, f"scale, offset, clamp and nan_value apply to numbers, "
                                 f"not to type {self.type}; remove '{field}' or set type: number",
                                 getattr(self, field)))
        if self.type in ("bool", "text") and self.deadband is not None:
            problems.append(("deadband", f"a deadband applies to numbers, not to type {self.type}",
                             self.deadband))
        raise_problems(problems, "mqtt")
        return self


class MqttSourceConfig(SourceConfig):
    """A connection to one MQTT broker and the tags its topics feed."""

    protocol: Literal["mqtt"]
    broker: str  # mqtt://host[:port] or mqtts://host[:port]
    username: str | None = None
    password: str | None = None
    client_id: str | None = None  # default: collector-<host>-<machine>-<source>, stable across restarts
    version: Literal["3.1.1", "5"] = "3.1.1"
    keepalive: Duration = 60.0
    timeout: Duration = 10.0  # connect and subscribe timeout
    qos: Literal[0, 1, 2] = 1
    clean_session: bool | None = None  # default: persistent session when qos >= 1
    session_expiry: Duration = 7 * 86400.0  # MQTT 5: how long the broker keeps a persistent session
    max_inflight: int = Field(10_000, ge=1, le=65535)  # unacknowledged QoS>=1 messages at once
    max_payload: ByteSize = 256 * 1024  # larger messages are counted as bad, not decoded
    retained: bool = True  # take retained messages (the broker's last value) at subscribe time
    ca_file: str | None = None  # mqtts: CA certificate(s) of the broker; default: system CAs
    cert_file: str | None = None  # mqtts: client certificate (PEM), when the broker asks for one
    key_file: str | None = None  # mqtts: its private key (PEM), if not inside cert_file
    key_password: str | None = None
    tls_insecure: bool = False  # mqtts: do not verify the broker's certificate (testing only)
    tags: list[MqttTagConfig] = []  # type: ignore[assignment]

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {5: "5", 3.1: "3.1.1"}.get(value, str(value))  # YAML reads `5` as a number
        return value

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"broker {value!r} must start with mqtt:// (plain) or mqtts:// (TLS), "
                             "e.g. mqtt://192.168.1.10:1883")
        if not parts.hostname:
            raise ValueError(f"broker {value!r} has no host; write e.g. mqtt://192.168.1.10:1883")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"broker {value!r} has an invalid port (1-65535)") from None
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"broker {value!r}: only mqtt[s]://host:port is understood, no path")
        return value.strip()

    @property
    def tls(self) -> bool:
        return urlsplit(self.broker).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.broker).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.broker)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    @property
    def persistent(self) -> bool:
        """Whether the broker keeps the subscription and unacknowledged messages across connections."""
        return not self.clean_session if self.clean_session is not None else self.qos >= 1

    def effective_client_id(self, machine: str) -> str:
        """A fixed id: a persistent session is found again by the same id after a restart."""
        if self.client_id:
            return self.client_id
        return f"collector-{socket.gethostname()}-{machine}-{self.id}"[:128]

    @model_validator(mode="after")
    def _check(self) -> MqttSourceConfig:
        problems: Problems = []
        if not self.tls:
            for field in ("ca_file", "cert_file", "key_file", "key_password"):
                if getattr(self, field) is not None:
                    problems.append((field, f"{field} is only used with TLS; change the broker "
                                     "to mqtts://host:8883 or remove it", getattr(self, field)))
            if self.tls_insecure:
                problems.append(("tls_insecure", "tls_insecure is only used with an mqtts:// broker",
                                 True))
        if self.key_file is not None and self.cert_file is None:
            problems.append(("key_file", "key_file needs cert_file (the client certificate)",
                             self.key_file))
        if self.password is not None and self.username is None:
            problems.append(("password", "a password needs a username", "***"))
        if self.keepalive < 1 or self.keepalive > 65535:
            problems.append(("keepalive", "keepalive must be between 1 s and 65535 s", self.keepalive))
        if self.max_payload < 1:
            problems.append(("max_payload", "max_payload must be at least 1 byte", self.max_payload))
        raise_problems(problems, "mqtt")
        return self
