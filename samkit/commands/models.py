"""``samkit models``: list every model ``samkit.load`` accepts, planned heads, and heads that failed to load."""

from __future__ import annotations

import argparse
import sys

from samkit.registry import list_specs, problems

NAME_WIDTH = 28
KIND_WIDTH = 9
INPUT_WIDTH = 6


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the heads and backbones samkit.load accepts")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """One line per model: name, kind (head / backbone / planned), input (image / video), description."""
    for spec in list_specs():
        kind = "planned" if spec.status == "planned" else "backbone" if spec.is_backbone else "head"
        source = "" if spec.source == "samkit" else f" [from {spec.source}]"
        print(f"{spec.name:<{NAME_WIDTH}} {kind:<{KIND_WIDTH}} {spec.input_kind:<{INPUT_WIDTH}} "
              f"{spec.description}{source}")
    failed = problems()
    if failed:
        print("heads that could not be registered:", file=sys.stderr)
        for problem in failed:
            print(f"  {problem}", file=sys.stderr)
    return 0
