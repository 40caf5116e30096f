"""``samkit demo``: the first thing a newcomer runs.

It makes a short synthetic video and image (two objects, one occluding the other), runs every head
samkit implements plus the backbone's own image predictor, writes masks and overlays to ``--out`` and
says where they are. Without ``--checkpoint`` the weights are tiny and random: the pipeline is real,
the masks are not meaningful, and the demo says so. The few-shot (FSSAM) and referring (ReferSAM) heads
then run their tiny random test models (ReferSAM with the packaged MiniLM text model, no network); a
SAM 2 ``--checkpoint`` is not theirs (their checkpoints are whole models), so with one they are skipped
with a line saying how to run them.
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
FEW_SHOT_BACKBONE = "tiny-sam2"
REFERRING_BACKBONE = "tiny-sam"
REFERRING_TEXT_ENCODER = "minilm"
REFERRING_IMAGE_SIZE = 128
REFERRING_EXPRESSION = "the red disk on the left"
REFERRED_OBJECT = 1
"""The red disk: on the left of the sample's first frame, the square on the right."""
FEW_SHOT_OBJECT = 1


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
            "--backbone sam2.1-hiera-tiny) for real image and long-video masks; the few-shot and referring heads "
            "take their own trained checkpoints (samkit fewshot / samkit refer --checkpoint ...)."
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


def _demo_few_shot(args: argparse.Namespace, backbone: str, sample, frames_dir: Path, out: Path) -> bool:
    """FSSAM from one example (first frame + its disk mask) on the last frame; IoU against the known mask."""
    if args.checkpoint is not None:
        print("few-shot (fssam): skipped -- it needs a whole FSSAM checkpoint (e.g. the official best_1shot.pth), "
              "not a SAM 2 one; run: samkit fewshot --support IMG:MASK --query IMG_OR_DIR --out DIR "
              "--checkpoint best_1shot.pth --backbone sam2-hiera-small")
        return True
    import samkit
    from samkit.io.atomic import atomic_save_image

    query_index = sample.num_frames - 1
    support = samkit.SupportSet([sample.frames[0]], [sample.masks[FEW_SHOT_OBJECT][0]])
    query = sample.frames[query_index]
    with samkit.load("fssam", backbone=FEW_SHOT_BACKBONE, device=args.device) as segmenter:
        trained = bool(segmenter.config.get("trained", False))
        result = segmenter.predict(query, prompt=support)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "masks.png")
    atomic_save_image(out / "overlay.png", result.overlay(query))
    score = mask_iou(result.masks[0], sample.masks[FEW_SHOT_OBJECT][query_index])
    print(f"few-shot (fssam on {FEW_SHOT_BACKBONE}, 1 example: frame 0 + the disk's mask, query frame {query_index}): "
          f"IoU {score:.3f} against the known mask; masks.png and overlay.png in {out}")
    return trained


def _demo_referring(args: argparse.Namespace, backbone: str, sample, frames_dir: Path, out: Path) -> bool:
    """ReferSAM on the first frame from a text expression; IoU against the object the text names."""
    if args.checkpoint is not None:
        print("referring (refersam): skipped -- it needs a whole ReferSAM checkpoint (trained with samkit train "
              "referring), not a SAM 2 one; run: samkit refer IMAGE \"the man on the left\" --out DIR "
              "--checkpoint refersam.pth --backbone sam-vit-b --text-encoder bert-base-uncased")
        return True
    import samkit
    from samkit.io.atomic import atomic_save_image

    image = sample.frames[0]
    with samkit.load("refersam", backbone=REFERRING_BACKBONE, text_encoder=REFERRING_TEXT_ENCODER,
                     image_size=REFERRING_IMAGE_SIZE, device=args.device) as segmenter:
        trained = bool(segmenter.config.get("trained", False))
        result = segmenter.predict(image, prompt=samkit.Text(REFERRING_EXPRESSION))
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "masks.png")
    atomic_save_image(out / "overlay.png", result.overlay(image))
    score = mask_iou(result.masks[0], sample.masks[REFERRED_OBJECT][0])
    print(f"referring (refersam on {REFERRING_BACKBONE} + packaged MiniLM, \"{REFERRING_EXPRESSION}\" on frame 0): "
          f"IoU {score:.3f} against the disk's known mask; masks.png and overlay.png in {out}")
    return trained


def mask_iou(prediction: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(prediction, target).sum()
    return 1.0 if union == 0 else float(np.logical_and(prediction, target).sum() / union)


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


_HEAD_DEMOS: dict[str, Callable[..., bool]] = {
    "sam2long": _demo_long_video,
    "fssam": _demo_few_shot,
    "refersam": _demo_referring,
}
