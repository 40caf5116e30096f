"""Helpers shared by the ``samkit`` sub-commands: argument types, the model options, quiet upstream warnings."""

from __future__ import annotations

import argparse
import contextlib
import warnings
from collections.abc import Callable, Iterator

from samkit.constants import DEFAULT_SAM2_BACKBONE

DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, ..."
CHECKPOINT_HELP = "weights of the model: a local file or a known id (see `samkit models`)"
UPSTREAM_NOISE = (
    "cannot import name '_C'",  # sam2's optional CUDA extension (hole filling) is missing
    ".*torch.jit.script. is deprecated",
)
"""Warning messages of the upstream packages that say nothing actionable to a CLI user."""


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def add_load_arguments(parser: argparse.ArgumentParser, *, backbone: str | None = DEFAULT_SAM2_BACKBONE,
                       backbone_help: str = "backbone (see `samkit models`)") -> None:
    """``--backbone``, ``--checkpoint`` and ``--device``: the ``samkit.load`` keywords every command shares."""
    default = f" (default {backbone})" if backbone is not None else ""
    parser.add_argument("--backbone", default=backbone, help=backbone_help + default)
    parser.add_argument("--checkpoint", default=None, help=CHECKPOINT_HELP)
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


@contextlib.contextmanager
def quiet_upstream_warnings(*categories: type[Warning]) -> Iterator[None]:
    """Hide the upstream packages' non-actionable warnings (and ``categories``) inside the block."""
    with warnings.catch_warnings():
        for message in UPSTREAM_NOISE:
            warnings.filterwarnings("ignore", message=message)
        for category in categories:
            warnings.filterwarnings("ignore", category=category)
        yield
