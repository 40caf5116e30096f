"""``samkit demo``: the first thing a newcomer runs.

It makes a short synthetic video and image (two objects, one occluding the other), runs every head
samkit implements plus the backbone's own image predictor, writes masks and overlays to ``--out`` and
says where they are. Without ``--checkpoint`` the weights are tiny and random: the pipeline is real,
the masks are not meaningful, and the demo says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from samkit.commands.common import add_load_arguments, int_at_least, quiet_upstream_warnings
from samkit.constants import DEFAULT_SAM2_BACKBONE

DEFAULT_OUT = "samkit_demo"
UNTRAINED_BACKBONE = "tiny-sam2"
SAMPLE_FRAMES = 16


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run every head on a generated sample and write the results")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT})")
    add_load_arguments(parser, backbone=None, backbone_help=f"SAM 2 backbone (default {UNTRAINED_BACKBONE}, or "
                                                            f"{DEFAULT_SAM2_BACKBONE} with --checkpoint)")
    parser.add_argument("--frames", type=int_at_least(1), default=SAMPLE_FRAMES, help="length of the sample video")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from samkit.checkpoints import UntrainedWeightsWarning
    from samkit.io.atomic import atomic_save_image
    from samkit.registry import get_spec
    from samkit.samples import synthetic_video

    out = Path(args.out)
    backbone = args.backbone or (UNTRAINED_BACKBONE if args.checkpoint is None else DEFAULT_SAM2_BACKBONE)
    get_spec(backbone)
    sample = synthetic_video(num_frames=args.frames)
    frames_dir = out / "sample_video"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(sample.frames):
        atomic_save_image(frames_dir / f"{index:05d}.jpg", frame, quality=95)
    print(f"sample: {sample.num_frames} frames of {sample.frames.shape[2]}x{sample.frames.shape[1]} in {frames_dir}")

    trained = True
    # the demo says once, below, that the weights are untrained
    with quiet_upstream_warnings(UntrainedWeightsWarning):
        for name, demo in _demos():
            trained &= demo(args, backbone, sample, frames_dir, out / name)
    if not trained:
        print(
            "NOTE: these weights are untrained (tiny random initialisation), so the masks show the pipeline "
            "working, not segmentation quality. Pass --checkpoint (e.g. --checkpoint sam2.1_hiera_tiny.pt "
            "--backbone sam2.1-hiera-tiny) for real masks."
        )
    print(f"done: results in {out.resolve()}")
    return 0


def _demos() -> list[tuple[str, Callable[..., bool]]]:
    from samkit.api import list_models

    heads = set(list_models(kind="head"))
    demos: list[tuple[str, Callable[..., bool]]] = [("image", _demo_image)]
    demos += [(name, demo) for name, demo in _HEAD_DEMOS.items() if name in heads]
    return demos


def _demo_image(args: argparse.Namespace, backbone: str, sample, frames_dir: Path, out: Path) -> bool:
    """The backbone's own promptable image predictor, one box per object on the first frame."""
    import samkit
    from samkit.io.atomic import atomic_save_image

    image = sample.frames[0]
    prompts = {obj_id: samkit.Box(_bounding_box(masks[0])) for obj_id, masks in sample.masks.items()}
    with samkit.load(backbone, checkpoint=args.checkpoint, device=args.device) as segmenter:
        result = segmenter.predict(image, prompts=prompts)
        trained = bool(segmenter.config.get("trained", False))
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "masks.png")
    atomic_save_image(out / "overlay.png", result.overlay(image))
    print(f"image ({backbone}, box prompts for objects {sorted(prompts)}): masks.png and overlay.png in {out}")
    return trained


def _demo_long_video(args: argparse.Namespace, backbone: str, sample, frames_dir: Path, out: Path) -> bool:
    """SAM2Long on the sample video from first-frame masks; scores J&F against the known ground truth."""
    import samkit
    from samkit.io.masks import write_palette_png
    from samkit.metrics.vos import evaluate

    prompts = {obj_id: samkit.Mask(masks[0], frame=0) for obj_id, masks in sample.masks.items()}
    predictions = out / "predictions" / frames_dir.name
    with samkit.load("sam2long", backbone=backbone, checkpoint=args.checkpoint, device=args.device) as segmenter:
        trained = bool(segmenter.config.get("trained", False))
        result = segmenter.predict(str(frames_dir), prompts=prompts).with_progress("sam2long")
        result.collect()
        result.save(predictions, format="davis")
        result.save(out, format="overlay")
    ground_truth = out / "ground_truth" / frames_dir.name
    ground_truth.mkdir(parents=True, exist_ok=True)
    for index, labels in enumerate(sample.label_maps()):
        write_palette_png(ground_truth / f"{index:05d}.png", labels)
    scores = evaluate(out / "ground_truth", out / "predictions", layout="davis")
    print(
        f"long video (sam2long on {backbone}, first-frame masks): J&F {scores['J&F']:.3f} against the known "
        f"ground truth; palette PNGs in {predictions}, overlay video {out / 'overlay.mp4'}"
    )
    return trained


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


_HEAD_DEMOS: dict[str, Callable[..., bool]] = {"sam2long": _demo_long_video}
