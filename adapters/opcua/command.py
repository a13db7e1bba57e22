"""The `collector opcua-browse` command line, apart from `browse.py` so that registering the
command (every `collector` command does) imports no asyncua: a collector without OPC UA
sources never loads it."""

from __future__ import annotations

import argparse


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `opcua-browse` to the `collector` command line."""
    p = subparsers.add_parser("opcua-browse", help="browse an OPC UA server: node ids, types, values, YAML tag lines")
    p.add_argument("--endpoint", required=True, help="opc.tcp://host:port[/path]")
    p.add_argument("--node", default="i=85", help="start node (default: the Objects folder, i=85)")
    p.add_argument("--depth", type=int, default=3, help="levels below the start node (default 3)")
    p.add_argument("--security-policy", default="None",
                   help="None | Basic256Sha256 | Aes128_Sha256_RsaOaep | Aes256_Sha256_RsaPss")
    p.add_argument("--security-mode", default=None, help="Sign | SignAndEncrypt")
    p.add_argument("--certificate", help="client certificate (generated if missing)")
    p.add_argument("--private-key", help="client private key (generated if missing)")
    p.add_argument("--server-certificate", help="pinned server certificate (saved if missing)")
    p.add_argument("--username")
    p.add_argument("--password", help="or set OPCUA_PASSWORD")
    p.add_argument("--timeout", default="5s", help="per request (default 5s)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from .browse import handler

    return handler(args)
