"""Benchmark of FSSAM training on ``samkit.engine``: seconds per training step and peak memory.

One training step = the engine's step on one batch of episodes (forward with DINOv2 priors, Dice
loss, backward into the three trained modules, AdamW update), measured after warm-up steps on
random episodes of the model's input size. Peak memory: the process's peak resident set size on
the CPU (model, activations, optimizer state and Python together), ``max_memory_allocated`` on CUDA.

    python benchmarks/fewshot_train.py                           # tiny FSSAM (128 px), batch 2
    python benchmarks/fewshot_train.py --backbone sam2-hiera-small --shots 1 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from samkit.engine.freezing import apply_freeze, set_train_mode, trainable_parameters
from samkit.fewshot.task import build_task

KIB = 1024


def random_batch(batch: int, shots: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Episodes of random images with a square object in every mask (values as the datasets give them)."""
    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(batch, shots + 1, size, size, dtype=torch.long)
    masks[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return {
        "query": (torch.rand(batch, 3, size, size, generator=generator) * 255).to(device),
        "support_images": (torch.rand(batch, shots, 3, size, size, generator=generator) * 255).to(device),
        "support_masks": masks[:, 1:].to(device),
        "query_label": masks[:, 0].to(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = build_task({"dataset": "synthetic", "root": "unused", "backbone": args.backbone, "shots": args.shots})
    model = task.build_model()
    plan = apply_freeze(model, task)
    model.to(device)
    set_train_mode(model, plan)
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=1e-3, weight_decay=0.0)
    batch = random_batch(args.batch, args.shots, task.settings["image_size"], device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def step() -> None:
        with autocast:
            loss = task.training_step(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / KIB**2
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB  # Linux reports KiB
    seconds = (time.perf_counter() - start) / args.steps
    print(json.dumps({"backbone": args.backbone, "shots": args.shots, "batch": args.batch,
                      "image_size": task.settings["image_size"], "device": str(device), "threads": args.threads,
                      "seconds_per_step": round(seconds, 4), "peak_memory_mib": round(peak, 1),
                      "trainable_parameters": sum(p.numel() for p in trainable_parameters(model))}))


if __name__ == "__main__":
    main()
