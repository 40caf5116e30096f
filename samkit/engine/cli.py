"""``samkit train <head> --config X.yaml [--resume]`` and ``samkit eval <head> --config X.yaml --checkpoint F``.

``register(subparsers)`` adds the ``train`` command to the top-level parser;
``register_eval(eval_tasks)`` adds one ``samkit eval <head>`` sub-command per head to the existing
``eval`` group (wired in by ``samkit.commands.train`` and ``samkit.commands.eval``). Run a multi-GPU
job with ``torchrun --nproc_per_node=N -m samkit.cli train ...``.
This module is light to import (no torch until a command runs).
"""

from __future__ import annotations

import argparse
import json

from samkit.engine.task import HEADS


def _run_train(args: argparse.Namespace) -> int:
    from samkit.engine.trainer import train

    result = train(args.config, head=args.head, resume=args.resume)
    if result.metrics:
        print(json.dumps({"steps": result.steps, "metrics": result.metrics, "best": result.best}))
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from samkit.engine.evaluation import evaluate

    results = evaluate(args.config, head=args.eval_task, checkpoint=args.checkpoint, out=args.out)
    print(json.dumps(results["metrics"]))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``samkit train <head>`` (one positional head name, validated lazily)."""
    parser = subparsers.add_parser(
        "train", help=f"train a head on samkit.engine ({', '.join(sorted(HEADS))})",
        description="Train a head from an experiment YAML (engine: and task: sections). Under torchrun, "
        "every process runs this command; rank 0 writes checkpoints, metrics.jsonl and results.json.",
    )
    parser.add_argument("head", metavar="HEAD", help=f"which head to train: {', '.join(sorted(HEADS))}")
    parser.add_argument("--config", required=True, help="experiment YAML file")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <output_dir>/last.pt (bit for bit on CPU with the same process count)")
    parser.set_defaults(run=_run_train)


def _add_eval_head(tasks: argparse._SubParsersAction, head: str) -> None:
    parser = tasks.add_parser(
        head, help=f"evaluate a trained {head} model (sharded over torchrun ranks)",
        description=f"Evaluate a {head} checkpoint on the validation set of an experiment YAML; the "
        "summed statistics and metrics are written atomically to --out (default <output_dir>/eval_results.json).",
    )
    parser.add_argument("--config", required=True, help="experiment YAML file")
    parser.add_argument("--checkpoint", required=True, help="best.pt / last.pt or any state_dict file")
    parser.add_argument("--out", default=None, help="results JSON path")
    parser.set_defaults(run=_run_eval)


def register_eval(tasks: argparse._SubParsersAction) -> None:
    """Add ``samkit eval <head>`` for every trainable head to the ``eval`` group's sub-parsers."""
    for head in sorted(HEADS):
        _add_eval_head(tasks, head)
