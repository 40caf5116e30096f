"""Micro-benchmark of the deformable-attention formulations in ``samkit.referring.msda``.

Times forward (and forward + backward) of ``reference`` (mmcv's pure-PyTorch formulation), ``grid``
and ``bag`` on the same random inputs, at the ReferSAM call-site sizes: the injector (ViT queries over
three adapter levels) and the extractor (adapter queries over the ViT grid), ViT-B at 448 px by default.

    python benchmarks/msda.py                        # ViT-B sizes at 448 px, CPU, one thread
    python benchmarks/msda.py --image-size 1024 --device cuda --threads 0
    python benchmarks/msda.py --tiny                 # a seconds-long run that proves the script works
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from samkit.referring.msda import choose_method, multi_scale_deformable_attn

METHODS = ("reference", "grid", "bag")
PATCH = 16
ADAPTER_STRIDES = (8, 16, 32)
POINTS = 4


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def call_site_inputs(
    name: str, image_size: int, batch: int, heads: int, head_dim: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """Random (value, spatial_shapes, locations, weights) shaped like a ReferSAM call site."""
    vit = image_size // PATCH
    adapter = [(image_size // s, image_size // s) for s in ADAPTER_STRIDES]
    if name == "injector":
        shapes, queries = adapter, vit * vit
    else:
        shapes, queries = [(vit, vit)], sum(h * w for h, w in adapter)
    spatial = torch.tensor(shapes, device=device)
    keys = sum(h * w for h, w in shapes)
    levels = len(shapes)
    value = torch.randn(batch, keys, heads, head_dim, device=device)
    locations = torch.rand(batch, queries, heads, levels, POINTS, 2, device=device) * 1.2 - 0.1
    weights = torch.rand(batch, queries, heads, levels, POINTS, device=device).softmax(-1)
    return value, spatial, locations, weights


def time_method(method: str, inputs: tuple[torch.Tensor, ...], backward: bool, repeats: int) -> float:
    """Median seconds of one call (forward, or forward + backward)."""
    value, spatial, locations, weights = inputs
    if backward:
        value, locations, weights = (t.detach().requires_grad_() for t in (value, locations, weights))
    times = []
    for _ in range(repeats + 1):
        _sync(value.device)
        start = time.perf_counter()
        out = multi_scale_deformable_attn(value, spatial, locations, weights, method)
        if backward:
            out.sum().backward()
        _sync(value.device)
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=32, help="ViT-B: 768 * 0.5 / 12")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--tiny", action="store_true", help="64 px, 1 repeat: checks the script runs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        args.image_size, args.repeats = 64, 1
    device = torch.device(args.device)
    torch.manual_seed(0)
    for site in ("injector", "extractor"):
        inputs = call_site_inputs(site, args.image_size, args.batch, args.heads, args.head_dim, device)
        row = {
            "site": site,
            "image_size": args.image_size,
            "batch": args.batch,
            "device": str(device),
            "auto": choose_method(inputs[0]),
        }
        for method in METHODS:
            row[f"{method}_forward_s"] = time_method(method, inputs, False, args.repeats)
            row[f"{method}_train_s"] = time_method(method, inputs, True, args.repeats)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
