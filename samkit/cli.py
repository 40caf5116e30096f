"""The ``samkit`` command line: one sub-command per module under ``samkit.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

from samkit.errors import InputError

COMMAND_MODULES = (
    "samkit.commands.models",
    "samkit.commands.demo",
    "samkit.commands.eval",
    "samkit.commands.track",
    "samkit.commands.track_dataset",
    "samkit.commands.refer",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samkit",
        description="SAM-family segmentation with SAM / SAM 2: long-video tracking (SAM2Long) and promptable "
                    "image segmentation; few-shot (FSSAM) and referring (ReferSAM) heads are planned.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except InputError as error:
        print(f"samkit {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
