"""`collector mqtt-watch`: what is being published, how often, in what shape; YAML to paste.

For commissioning: subscribe to a filter (default `#`), count messages per topic, take apart
the payloads (plain values, or JSON flattened into dotted paths with example values), spot the
timestamp field, and print `tags:` entries for the config file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiomqtt
from pydantic import ValidationError

from .config import MqttSourceConfig
from .connection import explain, make_client
from .payload import PathStep, format_path, plain_value
from .topics import parse_topic, tag_name

MAX_TOPICS = 500
MAX_PATHS = 50
_TS_KEYS = re.compile(r"^(ts|time|timestamp|t_?stamp|datetime|date_?time|at|created(_at)?|ts_?ms)$", re.I)


@dataclass
class TopicSeen:
    """What one topic has shown so far."""

    count: int = 0
    first: float = 0.0
    last: float = 0.0
    size: int = 0
    kind: str = ""  # json | number | bool | text | binary
    paths: dict[str, Any] = field(default_factory=dict)  # JSON path -> example value
    example: Any = None

    def rate(self, now: float) -> float:
        span = max(now - self.first, 1e-3)
        return self.count / span if self.count > 1 else 0.0


def flatten(doc: Any, prefix: tuple[PathStep, ...] = (), out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every scalar in a JSON document by its path (`a.b[0].c`), at most MAX_PATHS of them."""
    out = {} if out is None else out
    if len(out) >= MAX_PATHS:
        return out
    if isinstance(doc, dict):
        for key, value in doc.items():
            flatten(value, (*prefix, str(key)), out)
    elif isinstance(doc, list):
        for index, value in enumerate(doc[:8]):
            flatten(value, (*prefix, index), out)
    else:
        out[format_path(prefix) or "$"] = doc
    return out


def looks_like_time(path: str, value: Any) -> bool:
    """A payload field that holds the device's clock rather than a measurement."""
    last = re.split(r"[.\[]", path)[-1].strip('"]')
    if _TS_KEYS.match(last):
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 1e12 <= value < 1e13 or 1e15 <= value < 1e16  # epoch ms / µs of this century
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", value):
        return True
    return False


def observe(seen: TopicSeen, payload: bytes, now: float) -> None:
    """Fold one message into what a topic has shown."""
    if seen.count == 0:
        seen.first = now
    seen.count += 1
    seen.last = now
    seen.size = len(payload)
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict | list):
        seen.kind = "json"
        seen.paths.update(flatten(doc))
        return
    try:
        value = plain_value(payload)
    except ValueError:
        seen.kind, seen.example = "binary", payload[:16].hex()
        return
    seen.kind = "bool" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "text"
    seen.example = value


def show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def table(topics: dict[str, TopicSeen], now: float, out: TextIO) -> None:
    """The live view: one block per topic with its rate and payload shape."""
    for topic in sorted(topics):
        s = topics[topic]
        print(f"{topic}  {s.count} msgs  {s.rate(now):.1f}/s  {s.size} B  {s.kind}", file=out)
        if s.kind == "json":
            for path, value in s.paths.items():
                mark = "  (timestamp?)" if looks_like_time(path, value) else ""
                print(f"    {path} = {show(value)}{mark}", file=out)
        else:
            print(f"    {show(s.example)}", file=out)
    out.flush()


def yaml_tags(topics: dict[str, TopicSeen]) -> list[str]:
    """`tags:` entries for every value seen, names made unique, ready to paste."""
    lines = ["tags:"]
    used: set[str] = set()

    def unique(base: str) -> str:
        name = (base or "value")[:60]
        candidate, n = name, 2
        while candidate in used:
            candidate, n = f"{name}_{n}", n + 1
        used.add(candidate)
        return candidate

    for topic in sorted(topics):
        s = topics[topic]
        level = tag_name(topic.rsplit("/", 1)[-1])
        if s.kind == "json":
            stamps = [p for p, v in s.paths.items() if looks_like_time(p, v)]
            for path, value in s.paths.items():
                if path in stamps or value is None or isinstance(value, dict | list):
                    continue
                lines.append(f"  - name: {unique(tag_name(path.replace('.', '_')) or level)}")
                lines.append(f"    topic: {_quote(topic)}")
                lines.append(f"    json: {_quote(path)}")
                if stamps:
                    lines.append(f"    timestamp: {_quote(stamps[0])}")
                lines += _type_lines(value)
        elif s.kind in ("number", "bool", "text"):
            lines.append(f"  - name: {unique(level)}")
            lines.append(f"    topic: {_quote(topic)}")
            lines += _type_lines(s.example)
    return lines


def _type_lines(value: Any) -> list[str]:
    example = f"    # e.g. {show(value)}"
    if isinstance(value, bool):
        return ["    type: bool", example]
    if isinstance(value, int | float):
        return [example]
    return ["    type: text", example]


def _quote(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_./\-]+", text) and not text[0].isdigit() else json.dumps(text)


def watch_config(args: argparse.Namespace) -> MqttSourceConfig:
    """The connection settings of the watch, validated like a source's."""
    return MqttSourceConfig(
        id="watch", protocol="mqtt", broker=args.broker, username=args.username,
        password=args.password, ca_file=args.ca_file, tls_insecure=args.insecure,
        version=args.version, qos=0, clean_session=True, timeout=args.timeout)


async def watch(args: argparse.Namespace, cfg: MqttSourceConfig, out: TextIO) -> int:
    """Subscribe, print the live view every `--every` seconds, and the YAML at the end."""
    topics: dict[str, TopicSeen] = {}
    ignored = 0
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        client = make_client(cfg, "watch", client_id=f"collector-watch-{uuid.uuid4().hex[:8]}")
        async with client:
            await client.subscribe(args.topic, qos=0)
            print(f"watching {args.topic} on {args.broker}"
                  + (f" for {args.seconds:g} s" if args.seconds else " (Ctrl-C to stop)"), file=out)
            next_table = time.monotonic() + args.every
            messages = client.messages
            while deadline is None or time.monotonic() < deadline:
                wait = min(t for t in (next_table, deadline) if t is not None) - time.monotonic()
                try:
                    message = await asyncio.wait_for(anext(messages), max(wait, 0.01))
                except TimeoutError:
                    message = None
                now = time.monotonic()
                if message is not None:
                    topic = message.topic.value
                    if topic in topics or len(topics) < MAX_TOPICS:
                        observe(topics.setdefault(topic, TopicSeen()), message.payload, now)
                    else:
                        ignored += 1
                if now >= next_table and deadline is None:
                    print(f"--- {time.strftime('%H:%M:%S')}", file=out)
                    table(topics, now, out)
                    next_table = now + args.every
    except (aiomqtt.MqttError, OSError) as exc:
        print(f"collector mqtt-watch: {explain(exc, cfg)}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        pass
    now = time.monotonic()
    print(f"=== {len(topics)} topics" + (f" ({ignored} messages on further topics not shown)"
                                         if ignored else ""), file=out)
    table(topics, now, out)
    if topics:
        print("\n# paste under a source with protocol: mqtt (rename the tags as you like)", file=out)
        print("\n".join(yaml_tags(topics)), file=out)
    return 0


def handler(args: argparse.Namespace) -> int:
    """`collector mqtt-watch` entry point; returns the exit code."""
    try:
        parse_topic(args.topic)
        cfg = watch_config(args)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        print(f"collector mqtt-watch: {where + ': ' if where else ''}{message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"collector mqtt-watch: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(watch(args, cfg, sys.stdout))
    return 0
