"""``samkit track``: segment and track objects through one video from a mask, clicks or a box."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from samkit.errors import InputError

TREE_PRESETS = ("paper", "official", "sam2")
OUTPUT_FORMATS = ("davis", "per-object", "coco-rle", "overlay")
DEFAULT_BACKBONE = "sam2.1-hiera-tiny"
BINARY_FOREGROUND = 255
VOID_LABEL = 255


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``track`` and ``track-dataset``: which model, which weights, which tree."""
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"SAM 2 backbone (default {DEFAULT_BACKBONE})")
    parser.add_argument("--checkpoint", default=None, help="backbone checkpoint: a local file or a known model id")
    parser.add_argument("--tree", choices=TREE_PRESETS, default="paper", help="memory-tree preset (default paper)")
    parser.add_argument("--pathways", type=int, default=None, help="number of pathways (overrides the preset)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, ...")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("track", help="track objects through one video (SAM2Long)")
    parser.add_argument("video", help="a folder of JPEG/PNG frames or a video file")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--mask", help="mask PNG: a palette / grayscale label map (each id an object) or binary")
    prompt.add_argument("--points", action="append", help='a click "x,y[,label]"; repeat or separate with ";"')
    prompt.add_argument("--box", help='a box "x0,y0,x1,y1" in pixels')
    parser.add_argument("--obj", type=int, default=None, help="object id for --points / --box (default 1)")
    parser.add_argument("--frame", type=int, default=0, help="frame the prompt is on (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="davis", help="output format (default davis)")
    parser.add_argument("--reverse", action="store_true", help="propagate towards the first frame")
    parser.add_argument("--max-frames", type=int, default=None, help="track at most this many frames")
    add_model_arguments(parser)
    parser.set_defaults(run=run)


def build_tracker(args: argparse.Namespace):
    """The long-video segmenter the model options describe."""
    import samkit
    from samkit.longvideo import TreeConfig

    tree = {"paper": TreeConfig.paper, "official": TreeConfig.official, "sam2": TreeConfig.sam2}[args.tree]()
    if args.pathways is not None:
        tree = dataclasses.replace(tree, num_pathways=args.pathways)
    return samkit.load("sam2long", backbone=args.backbone, checkpoint=args.checkpoint, device=args.device, tree=tree)


def parse_points(specs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``["x,y[,label]", ...]`` (each may hold several ``;``-separated clicks) -> (xy (K, 2), labels (K,))."""
    xy, labels = [], []
    for spec in specs:
        for click in filter(None, (part.strip() for part in spec.split(";"))):
            fields = click.split(",")
            try:
                values = [float(field) for field in fields]
            except ValueError:
                raise InputError(f'--points {click!r}: expected numbers "x,y" or "x,y,label"') from None
            if len(values) not in (2, 3):
                raise InputError(f'--points {click!r}: expected "x,y" or "x,y,label", got {len(values)} numbers')
            xy.append(values[:2])
            labels.append(int(values[2]) if len(values) == 3 else 1)
    if not xy:
        raise InputError('--points is empty: give at least one click "x,y[,label]"')
    return np.asarray(xy, dtype=np.float32), np.asarray(labels)


def parse_box(spec: str) -> list[float]:
    try:
        values = [float(field) for field in spec.split(",")]
    except ValueError:
        raise InputError(f'--box {spec!r}: expected four numbers "x0,y0,x1,y1"') from None
    if len(values) != 4:
        raise InputError(f'--box {spec!r}: expected four numbers "x0,y0,x1,y1", got {len(values)}')
    return values


def prompts_from_args(args: argparse.Namespace) -> dict:
    import samkit
    from samkit.io.masks import read_palette_png

    if args.mask is not None:
        path = Path(args.mask)
        if not path.is_file():
            raise InputError(f"--mask {path}: no such file; give a PNG mask of the prompt frame")
        labels = read_palette_png(path)
        values = {int(value) for value in np.unique(labels)} - {0}
        if values == {BINARY_FOREGROUND}:
            labels = (labels > 0).astype(np.uint8)
            values = {1}
        ids = sorted(values - {VOID_LABEL})
        if args.obj is not None:
            region = labels == args.obj if args.obj in ids else labels > 0
            return {args.obj: samkit.Mask(region, frame=args.frame)}
        if not ids:
            raise InputError(f"--mask {path} has no object pixels (every pixel is 0 or void 255)")
        return {obj_id: samkit.Mask(labels == obj_id, frame=args.frame) for obj_id in ids}
    obj_id = 1 if args.obj is None else args.obj
    if args.points is not None:
        xy, point_labels = parse_points(args.points)
        return {obj_id: samkit.Points(xy, point_labels, frame=args.frame)}
    return {obj_id: samkit.Box(parse_box(args.box), frame=args.frame)}


def run(args: argparse.Namespace) -> int:
    prompts = prompts_from_args(args)
    tracker = build_tracker(args)
    result = tracker.predict(args.video, prompts=prompts, reverse=args.reverse, max_frames=args.max_frames)
    where = result.save(args.out, format=args.format)
    print(f"tracked objects {sorted(prompts)} through {args.video}: {args.format} output in {where}")
    if not tracker.config.get("trained", False):
        print("NOTE: no --checkpoint was given, so the weights are random and the masks are not meaningful")
    return 0
