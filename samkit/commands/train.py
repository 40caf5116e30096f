"""``samkit train <head> --config X.yaml [--resume]``: the training engine's command (samkit.engine.cli)."""

from __future__ import annotations

from samkit.engine.cli import register as add_parser

__all__ = ["add_parser"]
