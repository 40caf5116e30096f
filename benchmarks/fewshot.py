"""Benchmark of ``samkit.fewshot``: FSSAM episode cost, support reuse and a training step, in one run.

Prints, on the same weights and inputs:
1. seconds per 1-shot and 5-shot episode, split into DINOv2 / Hiera / memory building / memory
   attention / decoder (the rest -- priors, IMR, memory bank -- is "other");
2. eight queries against one 1-shot and one 5-shot support set: support encoded once and reused (one
   query per pass, and four per pass as ``predict_many`` batches them on CUDA) vs eight independent
   episodes, and their ratio (goal <= 0.5). A query's own encoders (DINOv2 + Hiera) are half of a
   1-shot episode, so for K = 1 the ratio cannot go below 0.5 + 1 / (2 x 8) with exact outputs;
3. one training step at batch 2 (official recipe: Dice loss, AdamW on decoder + memory encoder +
   memory attention) and the peak memory of a fresh process doing it.

    python benchmarks/fewshot.py --tiny                         # tiny random FSSAM, 128 px, quick check
    python benchmarks/fewshot.py                                # Hiera-S at 512 + DINOv2 ViT-B/14 (random)
    python benchmarks/fewshot.py --checkpoint best_1shot.pth    # real weights

Timings use ``--threads`` CPU threads unless ``--device`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from collections import defaultdict

import torch

from samkit.fewshot import build_fssam
from samkit.fewshot import model as fssam_model
from samkit.fewshot.segmenter import CUDA_BATCH as BATCH

QUERIES = 8
TRAIN_BATCH = 2
STAGES = ("dino", "hiera", "memory building", "memory attention", "decoder")
KIB = 1024


def build(args: argparse.Namespace):
    if args.tiny:
        return build_fssam("tiny", dino="tiny", seed=0, device=args.device)
    return build_fssam(args.backbone, checkpoint=args.checkpoint, seed=0, device=args.device)


def inputs(size: int, batch: int, shots: int, device: str, seed: int = 0):
    """Smooth random images (0-255) and box masks, official layout."""
    g = torch.Generator().manual_seed(seed)
    low = size // 16

    def images(n: int) -> torch.Tensor:
        x = torch.rand(n, 3, low, low, generator=g)
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) * 255

    query = images(batch)
    support = images(batch * shots).view(batch, shots, 3, size, size)
    masks = torch.zeros(batch, shots, size, size, dtype=torch.long)
    masks[..., size // 4: 3 * size // 4, size // 5: size // 2] = 1
    return query.to(device), support.to(device), masks.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def stage_timer(model, device: str):
    """Accumulate wall time per stage by wrapping the model's stage methods for the duration."""
    totals: dict[str, float] = defaultdict(float)

    def timed(name, function):
        def wrapper(*args, **kwargs):
            sync(device)
            start = time.perf_counter()
            out = function(*args, **kwargs)
            sync(device)
            totals[name] += time.perf_counter() - start
            return out
        return wrapper

    patched = {"_dino": "dino", "_backbone": "hiera", "_mask_memory": "memory building", "_decode": "decoder"}
    for attribute, name in patched.items():
        setattr(model, attribute, timed(name, getattr(model, attribute)))
    attention = fssam_model.calibrated_memory_attention
    fssam_model.calibrated_memory_attention = timed("memory attention", attention)
    try:
        yield totals
    finally:
        for attribute in patched:
            delattr(model, attribute)
        fssam_model.calibrated_memory_attention = attention


def episode_costs(model, args: argparse.Namespace) -> None:
    size = model.image_size
    for shots in (1, 5):
        query, support, masks = inputs(size, 1, shots, args.device)
        with torch.inference_mode():
            model(query, support, masks)  # warm-up
            with stage_timer(model, args.device) as totals:
                start = time.perf_counter()
                for _ in range(args.repeats):
                    model(query, support, masks)
                sync(args.device)
                total = (time.perf_counter() - start) / args.repeats
        split = {name: totals[name] / args.repeats for name in STAGES}
        other = total - sum(split.values())
        parts = "  ".join(f"{name} {seconds:.3f}" for name, seconds in split.items())
        print(f"{shots}-shot episode: {total:.3f} s  ({parts}  other {other:.3f})")


def reuse(model, args: argparse.Namespace, shots: int) -> None:
    """Eight queries, one K-shot support set: independent episodes vs support encoded once (one query at a
    time, then ``BATCH`` queries per pass, as ``FewShotSegmenter.predict_many`` does on CUDA)."""
    size = model.image_size
    query, _, _ = inputs(size, args.queries, 1, args.device, seed=1)
    _, support, masks = inputs(size, 1, shots, args.device, seed=2)
    with torch.inference_mode():
        model(query[:1], support, masks)  # warm-up
        sync(args.device)
        start = time.perf_counter()
        for index in range(args.queries):
            model(query[index:index + 1], support, masks)
        sync(args.device)
        independent = time.perf_counter() - start
        timings = {}
        for batch in (1, BATCH):
            start = time.perf_counter()
            encoded = model.encode_support(support, masks)
            for index in range(0, args.queries, batch):
                model.segment(model.encode_query(query[index:index + batch]), encoded)
            sync(args.device)
            timings[batch] = time.perf_counter() - start
    print(f"{args.queries} queries, {shots}-shot support: independent {independent:.3f} s; support reused "
          f"{timings[1]:.3f} s (ratio {timings[1] / independent:.2f}), reused + {BATCH} queries per pass "
          f"{timings[BATCH]:.3f} s (ratio {timings[BATCH] / independent:.2f})")


def train_step(args: argparse.Namespace) -> dict[str, float]:
    from samkit.fewshot import dice_loss

    model = build(args).freeze().train()
    optimizer = torch.optim.AdamW(model.trained_parameters(), lr=1e-3, weight_decay=0.0)
    query, support, masks = inputs(model.image_size, TRAIN_BATCH, 1, args.device, seed=2)
    target = masks[:, 0]
    seconds = []
    for _ in range(args.repeats + 1):
        sync(args.device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = dice_loss(model(query, support, masks), target)
        loss.backward()
        optimizer.step()
        sync(args.device)
        seconds.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB)
    return {"seconds": min(seconds[1:]), "peak_bytes": float(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random FSSAM at 128 px (quick check)")
    parser.add_argument("--backbone", default="sam2-hiera-small")
    parser.add_argument("--checkpoint", default=None, help="FSSAM checkpoint (default: random weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=QUERIES, help="queries against one support set")
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.train_only:
        print(json.dumps(train_step(args)))
        return
    model = build(args)
    print(f"FSSAM {'tiny' if args.tiny else args.backbone}, {model.image_size} px, device {args.device}, "
          f"{args.threads} threads, {args.repeats} repeats")
    episode_costs(model, args)
    for shots in (1, 5):
        reuse(model, args, shots)
    del model
    command = [sys.executable, __file__, "--train-only", "--device", args.device, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--backbone", args.backbone]
    command += ["--tiny"] if args.tiny else []
    command += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    print(f"training step, batch {TRAIN_BATCH}: {result['seconds']:.3f} s, peak memory "
          f"{result['peak_bytes'] / KIB**3:.2f} GiB ({'CUDA allocated' if args.device.startswith('cuda') else 'RSS'})")


if __name__ == "__main__":
    main()
