"""Configuration of an `protocol: opcua` source and its tags (validated by `collector check`)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from collector.config import Duration, SourceConfig, TagConfig

from .nodeid import BrowsePath, NodeRef, parse_browse_path, parse_node_id

SecurityPolicyName = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]


class OpcUaTagConfig(TagConfig):
    """One variable: by node id or by browse path, optionally one element of an array."""

    node: str | None = None  # ns=2;i=42 | ns=1;s=Press07.Temperature | g= | b= | nsu=urn:...;s=...
    browse_path: str | None = None  # 2:Press07/2:Temperature, from the Objects folder
    index: int | None = Field(None, ge=0)  # element of an array value (0-based)
    sampling_interval: Duration | None = None  # default: the source's interval
    queue_size: int | None = Field(None, ge=0, le=10_000)  # server-side queue of changes; default 10

    @field_validator("node")
    @classmethod
    def _check_node(cls, value: str | None) -> str | None:
        if value is not None:
            parse_node_id(value)
        return value

    @field_validator("browse_path")
    @classmethod
    def _check_browse_path(cls, value: str | None) -> str | None:
        if value is not None:
            parse_browse_path(value)
        return value

    @model_validator(mode="after")
    def _one_address(self) -> OpcUaTagConfig:
        if self.node is None and self.browse_path is None:
            raise ValueError(f"tag {self.name!r} needs 'node' (e.g. ns=2;s=Press07.Temperature) or 'browse_path' "
                             "(e.g. 2:Press07/2:Temperature); `collector opcua-browse` lists them")
        if self.node is not None and self.browse_path is not None:
            raise ValueError(f"tag {self.name!r} has both 'node' and 'browse_path'; keep one")
        return self

    def node_ref(self) -> NodeRef | None:
        return parse_node_id(self.node) if self.node is not None else None

    def path(self) -> BrowsePath | None:
        return parse_browse_path(self.browse_path) if self.browse_path is not None else None

    @property
    def address(self) -> str:
        """How the tag names its variable, for messages."""
        return self.node if self.node is not None else f"browse path {self.browse_path}"


class OpcUaSourceConfig(SourceConfig):
    """One OPC UA server endpoint; all its tags share one session."""

    protocol: Literal["opcua"]
    endpoint: str
    mode: Literal["subscribe", "poll"] = "subscribe"
    timeout: Duration = 5.0  # per request; creating thousands of monitored items takes a moment
    security_policy: SecurityPolicyName = "None"
    security_mode: Literal["Sign", "SignAndEncrypt"] | None = None  # default SignAndEncrypt when secured
    certificate: str | None = None  # client certificate (.der or .pem); generated if missing
    private_key: str | None = None  # its private key (.pem); generated if missing
    server_certificate: str | None = None  # pinned server certificate; saved on first connect if missing
    application_uri: str | None = None  # only used when generating a certificate
    username: str | None = None
    password: str | None = None
    batch_size: int = Field(1000, ge=1, le=100_000)  # nodes per Read / CreateMonitoredItems request
    tags: list[OpcUaTagConfig] = []  # type: ignore[assignment]  # the base declares list[TagConfig]

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme != "opc.tcp" or not url.hostname:
            raise ValueError(f"{value!r} is not an OPC UA endpoint; write opc.tcp://<host>:<port>[/path], "
                             "e.g. opc.tcp://192.168.0.10:4840")
        try:
            url.port  # noqa: B018 - raises on a non-numeric port
        except ValueError:
            raise ValueError(f"{value!r}: the port must be a number, e.g. opc.tcp://192.168.0.10:4840") from None
        return value

    @model_validator(mode="after")
    def _check_security(self) -> OpcUaSourceConfig:
        if self.interval <= 0:
            raise ValueError("interval must be more than 0 (e.g. 500ms or 1s)")
        if self.security_policy == "None":
            if self.security_mode is not None:
                raise ValueError(f"security_mode {self.security_mode} needs a security_policy such as "
                                 "Basic256Sha256 (with security_policy None nothing is signed)")
        elif not self.certificate or not self.private_key:
            raise ValueError(f"security_policy {self.security_policy} needs 'certificate' and 'private_key' "
                             "paths (both are generated on first start if the files do not exist)")
        if self.password is not None and not self.username:
            raise ValueError("'password' is set but 'username' is not")
        return self

    def poll_interval(self) -> float | None:
        return self.interval if self.mode == "poll" else None

    @property
    def message_security_mode(self) -> str:
        if self.security_policy == "None":
            return "None"
        return self.security_mode or "SignAndEncrypt"
