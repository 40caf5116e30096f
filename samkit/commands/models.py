"""``samkit models``: list every model ``samkit.load`` accepts."""

from __future__ import annotations

import argparse

from samkit.api import registry_entries


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the heads and backbones samkit.load accepts")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for entry in registry_entries():
        print(f"{entry.name:<28} {entry.kind:<9} {entry.description}")
    return 0
