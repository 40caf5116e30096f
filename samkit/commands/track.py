"""``samkit track``: segment and track objects through one video from a mask, clicks or a box."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from samkit.commands.common import int_at_least
from samkit.constants import DEFAULT_SAM2_BACKBONE, VOID_LABEL
from samkit.errors import InputError
from samkit.longvideo.config import TREE_PRESETS
from samkit.prompts import Box, Mask, Points
from samkit.results import VIDEO_FORMATS

if TYPE_CHECKING:
    from samkit.io.video import VideoSource
    from samkit.longvideo import LongVideoSegmenter

DEFAULT_BACKBONE = DEFAULT_SAM2_BACKBONE
DEFAULT_OBJ_ID = 1
XY_FIELDS, XY_LABEL_FIELDS = 2, 3
BOX_FIELDS = 4


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``track`` and ``track-dataset``: which model, which weights, which tree."""
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE,
                        help=f"SAM 2 backbone (default {DEFAULT_BACKBONE})")
    parser.add_argument("--checkpoint", default=None,
                        help="backbone checkpoint: a local file or a known model id")
    parser.add_argument("--tree", choices=list(TREE_PRESETS), default="paper",
                        help="memory-tree preset: paper (SAM2Long), official (with its code's quirks), "
                             "sam2 (plain SAM 2); default paper")
    parser.add_argument("--pathways", type=int_at_least(1), default=None,
                        help="number of pathways (overrides the preset)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, ...")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("track", help="track objects through one video (SAM2Long)")
    parser.add_argument("video", help="a folder of JPEG/PNG frames or a video file")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--mask", help="mask PNG of the prompt frame: a palette / grayscale label map (each "
                                       "id an object, 255 void) or a binary 0/1 or 0/255 mask (one object)")
    prompt.add_argument("--points", action="append",
                        help='a click "x,y[,label]" (label 1 object, 0 background); repeat the option or '
                             'separate clicks with ";"')
    prompt.add_argument("--box", help='a box "x0,y0,x1,y1" in pixels')
    parser.add_argument("--obj", type=int_at_least(1), default=None,
                        help="object id of the --points / --box object (default 1) or of a binary --mask; "
                             "with a --mask label map, the one object to track")
    parser.add_argument("--frame", type=int_at_least(0), default=0, help="frame the prompt is on (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=VIDEO_FORMATS, default="davis",
                        help="output format (default davis)")
    parser.add_argument("--reverse", action="store_true",
                        help="propagate from the prompt frame towards the first frame (needs --frame > 0)")
    parser.add_argument("--max-frames", type=int_at_least(1), default=None,
                        help="track at most this many frames, the prompt frame included")
    add_model_arguments(parser)
    parser.set_defaults(run=run)


def build_tracker(args: argparse.Namespace, device: str | None = None) -> LongVideoSegmenter:
    """The long-video segmenter the model options describe (on ``device``, default ``args.device``)."""
    import samkit

    tree = TREE_PRESETS[args.tree]()
    if args.pathways is not None:
        tree = tree.replace(num_pathways=args.pathways)
    device = args.device if device is None else device
    return samkit.load(
        "sam2long", backbone=args.backbone, checkpoint=args.checkpoint, device=device, tree=tree
    )


def _numbers(spec: str, option: str, expected: str) -> list[float]:
    try:
        values = [float(field) for field in spec.split(",")]
    except ValueError:
        raise InputError(f"{option} {spec!r}: expected {expected}") from None
    if not all(math.isfinite(value) for value in values):
        raise InputError(f"{option} {spec!r}: every number must be finite")
    return values


def parse_points(specs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``["x,y[,label]", ...]`` (each may hold several ``;``-separated clicks) -> (xy (K, 2), labels (K,))."""
    expected = 'numbers "x,y" or "x,y,label" (label 1 = object, 0 = background)'
    xy, labels = [], []
    for spec in specs:
        for click in filter(None, (part.strip() for part in spec.split(";"))):
            values = _numbers(click, "--points", expected)
            if len(values) not in (XY_FIELDS, XY_LABEL_FIELDS):
                raise InputError(f"--points {click!r}: expected {expected}, got {len(values)} numbers")
            if len(values) == XY_LABEL_FIELDS and values[2] not in (0, 1):
                raise InputError(f"--points {click!r}: the label must be 1 (object) or 0 (background)")
            if min(values[:2]) < 0:
                raise InputError(f"--points {click!r}: pixel coordinates must be >= 0")
            xy.append(values[:2])
            labels.append(int(values[2]) if len(values) == XY_LABEL_FIELDS else 1)
    if not xy:
        raise InputError('--points is empty: give at least one click "x,y[,label]"')
    return np.asarray(xy, dtype=np.float32), np.asarray(labels, dtype=np.int32)


def parse_box(spec: str) -> np.ndarray:
    """``"x0,y0,x1,y1"`` -> float32 (4,)."""
    values = _numbers(spec, "--box", 'four numbers "x0,y0,x1,y1"')
    if len(values) != BOX_FIELDS:
        raise InputError(f'--box {spec!r}: expected four numbers "x0,y0,x1,y1", got {len(values)}')
    if values[2] < values[0] or values[3] < values[1]:
        raise InputError(f'--box {spec!r}: expected "x0,y0,x1,y1" with x0 <= x1 and y0 <= y1')
    if min(values) < 0:
        raise InputError(f"--box {spec!r}: pixel coordinates must be >= 0")
    return np.asarray(values, dtype=np.float32)


def read_mask_prompts(path: Path, obj: int | None, frame: int) -> dict[int, Mask]:
    """``{obj_id: Mask}`` from a mask PNG.

    A mask with one foreground value (binary 0/1, 0/255, or a one-object label map) is one object:
    ``obj``, else its value (1 for 0/255). A label map with several ids gives every object (255 void),
    or only ``obj`` when given.
    """
    from samkit.io.masks import read_palette_png
    if not path.is_file():
        raise InputError(f"--mask {path}: no such file; give a PNG mask of the prompt frame")
    labels = read_palette_png(path)
    ids = sorted(set(np.unique(labels).tolist()) - {0})
    if len(ids) > 1:
        ids = [value for value in ids if value != VOID_LABEL]
    if not ids:
        raise InputError(f"--mask {path} has no object pixels (every pixel is 0 or void 255)")
    if len(ids) == 1:
        value = ids[0]
        default = DEFAULT_OBJ_ID if value == VOID_LABEL else value
        return {default if obj is None else obj: Mask(labels == value, frame=frame)}
    if obj is None:
        return {obj_id: Mask(labels == obj_id, frame=frame) for obj_id in ids}
    if obj not in ids:
        raise InputError(f"--obj {obj}: the label map {path} holds objects {ids}, not {obj}")
    return {obj: Mask(labels == obj, frame=frame)}


def prompts_from_args(args: argparse.Namespace) -> dict[int, Mask | Points | Box]:
    """``{obj_id: prompt}`` from ``--mask`` / ``--points`` / ``--box``, ``--obj`` and ``--frame``."""
    if args.mask is not None:
        return read_mask_prompts(Path(args.mask), args.obj, args.frame)
    obj_id = DEFAULT_OBJ_ID if args.obj is None else args.obj
    if args.points is not None:
        xy, labels = parse_points(args.points)
        return {obj_id: Points(xy, labels, frame=args.frame)}
    return {obj_id: Box(parse_box(args.box), frame=args.frame)}


def _pixel_coordinates(prompt: Mask | Points | Box) -> np.ndarray | None:
    """(K, 2) x, y of the clicks or box corners; None for a mask."""
    if isinstance(prompt, Points):
        return prompt.xy
    if isinstance(prompt, Box):
        return prompt.xyxy.reshape(2, 2)
    return None


def check_prompts_fit(
    args: argparse.Namespace, prompts: dict[int, Mask | Points | Box], video: VideoSource
) -> None:
    """The prompt frame lies in the video, a mask has the frame's size, clicks / box lie in the frame."""
    width, height = video.width, video.height
    if args.reverse and args.frame == 0:
        raise InputError("--reverse tracks from the prompt frame towards frame 0, so with the prompt on "
                         "frame 0 there is nothing to track: give the frame the prompt is on with --frame N "
                         "(N > 0), or drop --reverse")
    if video.num_frames is not None and args.frame >= video.num_frames:
        raise InputError(f"--frame {args.frame} is outside the video: {video.describe()} has "
                         f"{video.num_frames} frames (0..{video.num_frames - 1})")
    for prompt in prompts.values():
        if isinstance(prompt, Mask) and prompt.mask.shape != (height, width):
            rows, cols = prompt.mask.shape
            raise InputError(f"--mask {args.mask} is {cols}x{rows} (WxH) but the video is {width}x{height}; "
                             "give a mask of the prompt frame's size")
        xy = _pixel_coordinates(prompt)
        if xy is not None and (np.any(xy[:, 0] > width) or np.any(xy[:, 1] > height)):
            option = "--box" if args.box is not None else "--points"
            raise InputError(f"{option}: {xy.tolist()} lies outside the {width}x{height} (WxH) frame; "
                             "give pixel coordinates x in 0..width, y in 0..height")


def run(args: argparse.Namespace) -> int:
    from samkit.io.video import open_video

    prompts = prompts_from_args(args)
    with open_video(args.video) as video:
        check_prompts_fit(args, prompts, video)
        tracker = build_tracker(args)
        result = tracker.predict(video, prompts=prompts, reverse=args.reverse, max_frames=args.max_frames)
        with result.with_progress(Path(args.video).name) as shown:
            where = shown.save(args.out, format=args.format)
    print(f"tracked objects {sorted(prompts)} through {args.video}: {args.format} output in {where}")
    if not tracker.config.get("trained", False):
        print("NOTE: no --checkpoint was given, so the weights are random and the masks are not meaningful")
    return 0
