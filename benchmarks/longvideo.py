"""Benchmark of ``samkit.longvideo``: SAM2Long tree vs plain SAM 2, measured side by side in one run.

Prints seconds per frame for ``TreeConfig.paper()`` and ``TreeConfig.sam2()`` and their ratio on the
same video, prompts and weights: with the paper settings, where pathways collapse (every frame
certain), and in the worst case where they never do (every frame uncertain), also with
``batch_pathways=True``; then the same for 1, 2 and 4 objects; then the peak resident memory of a
100-frame vs a 1,000-frame run (each in a fresh process, frames read lazily from a JPEG folder).

    python benchmarks/longvideo.py                      # tiny random SAM 2, 128 px model input
    python benchmarks/longvideo.py --backbone sam2.1-hiera-tiny --checkpoint sam2.1_hiera_tiny.pt

Timings use the CPU unless ``--device`` says otherwise; sizes are printed with the results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

import samkit
from samkit.longvideo import TreeConfig
from samkit.samples import synthetic_video

NEVER_CERTAIN = 1e9
"""An uncertainty threshold no object score reaches: every frame is uncertain, pathways stay distinct."""
ALWAYS_CERTAIN = 0.0
"""An uncertainty threshold every object score passes: plain top-P, so pathways collapse."""
MEMORY_LENGTHS = (100, 1000)


def moving_disks(num_frames: int, height: int, width: int, num_objects: int):
    """A video of ``num_objects`` disks circling (a generator of frames), and first-frame mask prompts."""
    ys, xs = np.mgrid[0:height, 0:width]
    radius = 0.12 * min(height, width)

    def centre(obj: int, t: int) -> tuple[float, float]:
        angle = 2 * np.pi * (t / 50.0 + obj / num_objects)
        return height / 2 + 0.3 * height * np.sin(angle), width / 2 + 0.3 * width * np.cos(angle)

    def disk(obj: int, t: int) -> np.ndarray:
        cy, cx = centre(obj, t)
        return (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2

    def frames():
        rng = np.random.default_rng(0)
        background = rng.integers(30, 60, size=(height, width, 3), dtype=np.uint8)
        for t in range(num_frames):
            frame = background.copy()
            for obj in range(num_objects):
                frame[disk(obj, t)] = (200 - 40 * obj, 60 + 40 * obj, 90)
            yield frame

    prompts = {obj + 1: samkit.Mask(disk(obj, 0), frame=0) for obj in range(num_objects)}
    return frames, prompts


def seconds_per_frame(segmenter, video_frames, prompts, repeats: int) -> float:
    """Best of ``repeats`` full passes after one warm-up pass (frames are pre-decoded so only
    tracking is timed)."""
    sum(1 for _ in segmenter.predict(list(video_frames), prompts=prompts))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        count = sum(1 for _ in segmenter.predict(list(video_frames), prompts=prompts))
        best = min(best, (time.perf_counter() - start) / count)
    return best


def timing_table(args: argparse.Namespace) -> None:
    base = {"backbone": args.backbone, "checkpoint": args.checkpoint, "device": args.device}
    if args.image_size is not None:
        base["image_size"] = args.image_size
    sample = synthetic_video(num_frames=args.frames, height=args.height, width=args.width)
    prompts = {obj_id: samkit.Mask(masks[0]) for obj_id, masks in sample.masks.items() if obj_id == 1}
    frames = list(sample.frames)
    sam2 = samkit.load("sam2long", tree=TreeConfig.sam2(), **base)
    print(f"video: {args.frames} frames of {args.width}x{args.height}; backbone {args.backbone} "
          f"(model input {sam2.config.get('image_size')} px), device {sam2.device}")
    reference = seconds_per_frame(sam2, frames, prompts, args.repeats)
    print("\n1 object                          s/frame   ratio to sam2()")
    print(f"  sam2()                          {reference:8.4f}   1.00")
    cases = {
        "paper()": TreeConfig.paper(),
        "paper(), pathways collapse": TreeConfig.paper().replace(uncertainty_threshold=ALWAYS_CERTAIN),
        "paper(), never collapse (worst)": TreeConfig.paper().replace(uncertainty_threshold=NEVER_CERTAIN),
        "  same, batch_pathways=True": TreeConfig.paper().replace(uncertainty_threshold=NEVER_CERTAIN,
                                                                  batch_pathways=True),
    }
    for label, tree in cases.items():
        value = seconds_per_frame(samkit.load("sam2long", tree=tree, **base), frames, prompts, args.repeats)
        print(f"  {label:<32}{value:8.4f}   {value / reference:.2f}")

    print("\nobjects   sam2() s/frame   paper() s/frame   ratio")
    paper = samkit.load("sam2long", tree=TreeConfig.paper(), **base)
    for count in (1, 2, 4):
        make_frames, object_prompts = moving_disks(args.frames, args.height, args.width, count)
        object_frames = list(make_frames())
        plain = seconds_per_frame(sam2, object_frames, object_prompts, args.repeats)
        tree = seconds_per_frame(paper, object_frames, object_prompts, args.repeats)
        print(f"{count:>7}   {plain:14.4f}   {tree:15.4f}   {tree / plain:.2f}")


def peak_memory_child(args: argparse.Namespace) -> None:
    """Track through a folder of ``--memory-child`` JPEG frames (read lazily) and print the peak RSS
    (MiB) as JSON."""
    import resource
    import tempfile

    from PIL import Image

    base = {"backbone": args.backbone, "checkpoint": args.checkpoint, "device": args.device}
    if args.image_size is not None:
        base["image_size"] = args.image_size
    make_frames, prompts = moving_disks(args.memory_child, args.height, args.width, 1)
    with tempfile.TemporaryDirectory() as folder:
        for index, frame in enumerate(make_frames()):
            Image.fromarray(frame).save(f"{folder}/{index:05d}.jpg", quality=95)
        segmenter = samkit.load("sam2long", tree=TreeConfig.paper(), **base)
        count = sum(1 for _ in segmenter.predict(folder, prompts=prompts))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": count, "peak_mib": peak_mib}))


def memory_table(args: argparse.Namespace) -> None:
    print(f"\npeak resident memory, paper(), 1 object, {args.width}x{args.height} JPEG frames read lazily")
    peaks = {}
    for length in MEMORY_LENGTHS:
        command = [sys.executable, __file__, "--memory-child", str(length)] + _forwarded(args)
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
        report = json.loads(completed.stdout.strip().splitlines()[-1])
        peaks[length] = report["peak_mib"]
        print(f"  {report['frames']:>5} frames: {report['peak_mib']:8.1f} MiB")
    short, long = MEMORY_LENGTHS
    print(f"  ratio {long}/{short} frames: {peaks[long] / peaks[short]:.3f}")


def _forwarded(args: argparse.Namespace) -> list[str]:
    forwarded = ["--backbone", args.backbone, "--device", args.device, "--height", str(args.height),
                 "--width", str(args.width)]
    if args.checkpoint:
        forwarded += ["--checkpoint", args.checkpoint]
    if args.image_size is not None:
        forwarded += ["--image-size", str(args.image_size)]
    return forwarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny-sam2")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--image-size", type=int, default=None, help="model input size override")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=40, help="frames per timing run")
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3, help="timing passes; the best is kept")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 100 vs 1,000 frame memory runs")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        peak_memory_child(args)
        return
    timing_table(args)
    if not args.skip_memory:
        memory_table(args)


if __name__ == "__main__":
    main()
