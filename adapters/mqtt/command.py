"""The `collector mqtt-watch` command line, apart from `watch.py` so that registering the
command (every `collector` command does) imports no MQTT client: a collector without MQTT
sources never loads one."""

from __future__ import annotations

import argparse

DESCRIPTION = ("For commissioning: subscribe to a filter (default `#`), count messages per "
               "topic, take apart the payloads (plain values, or JSON flattened into dotted "
               "paths with example values), spot the timestamp field, and print `tags:` "
               "entries for the config file.")


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register `collector mqtt-watch`."""
    p = subparsers.add_parser(
        "mqtt-watch", help="show live MQTT topics, rates and payload shapes; print YAML tag lines",
        description=DESCRIPTION)
    p.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--topic", default="#", help="topic filter, + and # allowed (default: #)")
    p.add_argument("--seconds", type=float, default=None, help="stop after N seconds and print")
    p.add_argument("--every", type=float, default=5.0, help="refresh the live view every N seconds")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--ca-file", dest="ca_file", help="mqtts: CA certificate of the broker")
    p.add_argument("--insecure", action="store_true", help="mqtts: do not verify the certificate")
    p.add_argument("--version", choices=("3.1.1", "5"), default="3.1.1", help="MQTT version")
    p.add_argument("--timeout", type=float, default=5.0, help="connect timeout in seconds")
    p.set_defaults(func=handler)



def handler(args: argparse.Namespace) -> int:
    from .watch import handler

    return handler(args)
