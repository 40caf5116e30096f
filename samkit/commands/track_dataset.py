"""``samkit track-dataset``: run the long-video tracker over a VOS benchmark (DAVIS, SA-V, LVOS).

Videos are split into shards (``--shard I/N``, or one per rank under ``torchrun``); a re-run skips
videos whose outputs are complete, and a video that fails is reported without stopping the others.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import dataclass

from samkit.commands.track import add_model_arguments, build_tracker
from samkit.errors import InputError

OUTPUT_FORMAT_BY_LAYOUT = {"davis": "davis", "lvos": "davis", "sav": "per-object"}


@dataclass(frozen=True)
class Shard:
    """This process's part of the video list: every ``count``-th video starting at ``index``."""

    index: int
    count: int

    def select(self, items: list) -> list:
        return items[self.index :: self.count]


def parse_shard(spec: str | None, environ: dict[str, str] | None = None) -> Shard:
    """``"I/N"`` -> Shard(I, N); without a spec, the ``torchrun`` rank (``RANK`` / ``WORLD_SIZE``) or 0/1."""
    environ = os.environ if environ is None else environ
    if spec is None:
        return Shard(int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1)))
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise InputError(f'--shard {spec!r}: expected "I/N", e.g. "0/4"') from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {spec!r}: need N >= 1 and 0 <= I < N")
    return Shard(index, count)


def shard_device(requested: str, environ: dict[str, str] | None = None) -> str:
    """Under ``torchrun`` with ``--device auto``, each rank takes the GPU of its ``LOCAL_RANK``."""
    environ = os.environ if environ is None else environ
    if requested != "auto" or "LOCAL_RANK" not in environ:
        return requested
    import torch

    return f"cuda:{environ['LOCAL_RANK']}" if torch.cuda.is_available() else requested


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("track-dataset", help="track every video of a DAVIS / SA-V / LVOS folder")
    parser.add_argument("--data", required=True, help="dataset root folder")
    parser.add_argument("--layout", required=True, choices=sorted(OUTPUT_FORMAT_BY_LAYOUT), help="dataset layout")
    parser.add_argument("--split", default=None, help="video list (DAVIS val, SA-V sav_val, LVOS valid)")
    parser.add_argument("--out", required=True, help="output root: one folder per video")
    parser.add_argument("--shard", default=None, help='"I/N": take every N-th video from the I-th (default: rank)')
    add_model_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from samkit.longvideo.data import is_complete, list_videos

    shard = parse_shard(args.shard)
    args.device = shard_device(args.device)
    entries = shard.select(list_videos(args.data, args.layout, split=args.split))
    output_format = OUTPUT_FORMAT_BY_LAYOUT[args.layout]
    pending = [entry for entry in entries if not is_complete(entry, args.out, output_format)]
    print(
        f"shard {shard.index}/{shard.count}: {len(entries)} videos, {len(entries) - len(pending)} already "
        f"complete, {len(pending)} to track into {args.out}"
    )
    tracker = build_tracker(args) if pending else None
    failures: list[str] = []
    for entry in tqdm(pending, desc="videos", unit="video", position=1):
        try:
            result = tracker.predict(entry.frames_dir, prompts=entry.prompts())
            result.with_progress(entry.name).save(
                os.path.join(args.out, entry.name), format=output_format, object_names=entry.object_names
            )
        except (InputError, RuntimeError, OSError) as error:
            failures.append(entry.name)
            print(f"video {entry.name} failed: {error}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
    print(f"done: {len(pending) - len(failures)} tracked, {len(failures)} failed" + (
        f" ({', '.join(failures)})" if failures else ""
    ))
    return 1 if failures else 0
