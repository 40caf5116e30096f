"""``samkit track-dataset``: run the long-video tracker over a VOS benchmark (DAVIS, SA-V, LVOS).

Videos are split into shards (``--shard I/N``, or one per rank under ``torchrun``); a re-run skips
videos whose outputs are complete, and a video that fails is reported without stopping the others.
Outputs go to ``{out}/{video}/`` in the layout ``samkit eval vos`` reads next to the dataset's
annotation folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from samkit.commands.track import add_model_arguments, build_tracker
from samkit.errors import InputError

if TYPE_CHECKING:
    from samkit.datasets.vos import VideoEntry
    from samkit.longvideo import LongVideoSegmenter

OUTPUT_FORMAT_BY_LAYOUT = {"davis": "davis", "lvos": "davis", "sav": "per-object"}
OVERALL_BAR, VIDEO_BAR = 0, 1
"""Terminal rows of the progress bars: videos of the shard on top, frames of the current video below."""


@dataclass(frozen=True)
class Shard:
    """This process's part of the video list: every ``count``-th video starting at ``index``."""

    index: int
    count: int

    def select(self, items: list) -> list:
        return items[self.index :: self.count]


def _shard_from(spec: str, source: str) -> Shard:
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise InputError(f'{source} {spec!r}: expected "I/N", e.g. "0/4"') from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"{source} {spec!r}: need N >= 1 and 0 <= I < N")
    return Shard(index, count)


def parse_shard(spec: str | None, environ: dict[str, str] | None = None) -> Shard:
    """``"I/N"`` -> Shard(I, N); without a spec, the ``torchrun`` rank (``RANK`` / ``WORLD_SIZE``) or 0/1."""
    if spec is not None:
        return _shard_from(spec, "--shard")
    environ = os.environ if environ is None else environ
    if "RANK" not in environ and "WORLD_SIZE" not in environ:
        return Shard(0, 1)
    rank, world_size = environ.get("RANK", "0"), environ.get("WORLD_SIZE", "1")
    return _shard_from(f"{rank}/{world_size}", "RANK/WORLD_SIZE (torchrun)")


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
    parser.add_argument("--layout", required=True, choices=sorted(OUTPUT_FORMAT_BY_LAYOUT),
                        help="dataset layout")
    parser.add_argument("--split", default=None,
                        help="video list: DAVIS ImageSets/2017/{split}.txt (e.g. val), SA-V {split}.txt "
                             "(e.g. sav_val), LVOS split folder (default valid); default: every "
                             "annotated video")
    parser.add_argument("--out", required=True, help="output root: one folder per video")
    parser.add_argument("--shard", default=None,
                        help='"I/N": take every N-th video from the I-th (default: the torchrun '
                             "RANK/WORLD_SIZE, else every video)")
    add_model_arguments(parser)
    parser.set_defaults(run=run)


def report_failure(name: str, error: Exception) -> None:
    """One line for bad data (``InputError``); the traceback too for anything else, which may be a bug."""
    print(f"video {name} failed: {type(error).__name__}: {error}", file=sys.stderr)
    if not isinstance(error, InputError):
        traceback.print_exception(error, file=sys.stderr)


def track_video(tracker: LongVideoSegmenter, entry: VideoEntry, out: str, output_format: str) -> None:
    """Track one benchmark video from its annotations and write its outputs to ``{out}/{video}``."""
    result = tracker.predict(entry.frames_dir, prompts=entry.prompts())
    with result.with_progress(entry.name, position=VIDEO_BAR) as shown:
        shown.save(os.path.join(out, entry.name), format=output_format, object_names=entry.object_names)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from samkit.datasets.vos import is_complete, list_videos

    shard = parse_shard(args.shard)
    entries = shard.select(list_videos(args.data, args.layout, split=args.split))
    output_format = OUTPUT_FORMAT_BY_LAYOUT[args.layout]
    pending, failures = [], []
    for entry in entries:
        try:  # reads the video's annotations, which may be broken
            if not is_complete(entry, args.out, output_format):
                pending.append(entry)
        except Exception as error:  # noqa: BLE001 - one bad video must not stop the benchmark
            failures.append(entry.name)
            report_failure(entry.name, error)
    complete = len(entries) - len(pending) - len(failures)
    print(f"shard {shard.index}/{shard.count}: {len(entries)} videos, {complete} already complete, "
          f"{len(pending)} to track into {args.out}")
    tracker = build_tracker(args, device=shard_device(args.device)) if pending else None
    tracked = 0
    for entry in tqdm(pending, desc=f"shard {shard.index}/{shard.count}", unit="video", position=OVERALL_BAR):
        try:
            track_video(tracker, entry, args.out, output_format)
            tracked += 1
        except Exception as error:  # noqa: BLE001 - one bad video must not stop the benchmark
            failures.append(entry.name)
            report_failure(entry.name, error)
    print(f"done: {tracked} tracked, {complete} already complete, {len(failures)} failed"
          + (f" ({', '.join(failures)})" if failures else ""))
    return 1 if failures else 0
