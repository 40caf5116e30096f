"""``samkit eval <task>``: score saved predictions against ground truth.

Each task is one sub-command of the ``eval`` group: ``vos`` scores saved predictions; the trainable
heads (``fewshot``, ``referring``) are evaluated by ``samkit.engine`` (``samkit.engine.cli.register_eval``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from samkit.errors import InputError

PERCENT = 100.0
_MAX_MISSING_LISTED = 3


def _read_video_list(spec: str) -> list[str]:
    """``--videos``: a text file with one video name per line (e.g. ImageSets/2017/val.txt) or ``a,b,c``."""
    path = Path(spec)
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines()]
    else:
        names = [name.strip() for name in spec.split(",")]
    names = [name for name in names if name]
    if not names:
        raise InputError(f"--videos {spec!r} names no video; give a list file or comma-separated names")
    return names


def _print_vos_table(result) -> None:
    """The SA-V evaluator's report: global J&F, J, F, then one line per object (x100, one decimal)."""
    width = max([len("Global score"), *(len(key) for key in result.per_object)])
    print(f"{'object':<{width}}  {'J&F':>5}  {'J':>5}  {'F':>5}")
    print(
        f"{'Global score':<{width}}  {PERCENT * result.JF:5.1f}  {PERCENT * result.J:5.1f}  {PERCENT * result.F:5.1f}"
    )
    for key, score in result.per_object.items():
        print(
            f"{key:<{width}}  {PERCENT * score.JF:5.1f}  {PERCENT * score.J:5.1f}  {PERCENT * score.F:5.1f}"
        )


def _warn_vos(result) -> None:
    missing = result.missing_predictions
    if missing:
        shown = ", ".join(missing[:_MAX_MISSING_LISTED])
        more = f" and {len(missing) - _MAX_MISSING_LISTED} more" if len(missing) > _MAX_MISSING_LISTED else ""
        print(
            f"warning: {len(missing)} prediction files are missing and were scored as empty masks: "
            f"{shown}{more} (--strict makes this an error)",
            file=sys.stderr,
        )
    if result.unscored:
        print(
            f"warning: {len(result.unscored)} ground-truth objects had no frame to score and are left out: "
            f"{', '.join(result.unscored[:_MAX_MISSING_LISTED])}",
            file=sys.stderr,
        )


def _run_vos(args: argparse.Namespace) -> int:
    from samkit.metrics.vos import evaluate

    result = evaluate(
        args.gt,
        args.pred,
        layout=args.layout,
        skip_first_last=not args.keep_first_last,
        workers=args.workers,
        strict=args.strict,
        protocol=args.protocol,
        videos=_read_video_list(args.videos) if args.videos else None,
    )
    _warn_vos(result)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        _print_vos_table(result)
    return 0


def _add_vos_parser(tasks: argparse._SubParsersAction) -> None:
    from samkit.metrics.vos import LAYOUTS, PROTOCOLS

    parser = tasks.add_parser(
        "vos",
        help="J, F and J&F of video object segmentation masks (DAVIS / SA-V definitions)",
        description="Score predicted VOS masks: region J, boundary F and J&F per object and overall. Only "
        "frames with a ground-truth PNG are scored; a missing prediction file counts as an empty mask.",
    )
    parser.add_argument(
        "--gt", required=True, help="ground-truth root: {video}/{frame}.png or {video}/{obj}/{frame}.png"
    )
    parser.add_argument("--pred", required=True, help="prediction root with the same layout as --gt")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default=None, help="file layout (default: detected per video)"
    )
    parser.add_argument(
        "--keep-first-last",
        action="store_true",
        help="also score the first and last annotated frames (skipped by default, as DAVIS and SA-V do)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="sav",
        help="sav: an object counts from its first appearance (SA-V evaluator, default); "
        "davis: first-frame objects count on every frame (DAVIS 2017)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes evaluating videos in parallel (default 1)"
    )
    parser.add_argument("--strict", action="store_true", help="a missing prediction file is an error")
    parser.add_argument(
        "--videos", default=None, help="evaluate only these videos: a list file or comma-separated names"
    )
    parser.add_argument("--json", action="store_true", help='print {"J", "F", "J&F", "per_object"} as JSON')
    parser.set_defaults(run=_run_vos)


TASK_PARSERS = (_add_vos_parser,)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from samkit.engine.cli import register_eval

    parser = subparsers.add_parser(
        "eval", help="score saved predictions (vos) or evaluate a trained head (fewshot, referring)"
    )
    tasks = parser.add_subparsers(dest="eval_task", metavar="TASK")
    for add_task_parser in TASK_PARSERS:
        add_task_parser(tasks)
    register_eval(tasks)

    def run_without_task(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(run=run_without_task)
