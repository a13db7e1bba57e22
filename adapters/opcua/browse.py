"""`collector opcua-browse`: placeholder until written."""
import argparse


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pass
