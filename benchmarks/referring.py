"""Speed and memory of ReferSAM (issue 8 section 4), random weights, one run.

* inference images/s at 448 and 1024 px (ViT-B + BERT-base by default), with the time split between
  the SAM ViT blocks, the fusion layers (VL + prompt layers), the deformable attention and the SAM
  mask decoder (forward hooks; the rest is the spatial prior CNN, text encoder, projections);
* the same forward with mmcv's pure-PyTorch deformable-attention formulation in place of samkit's
  (``method="reference"``): seconds in deformable attention and per image, and the speed-up;
* one training step (forward + backward, batch 2 or ``--train-batch``) with and without activation checkpointing: time
  and peak memory (CUDA: ``max_memory_allocated``; CPU: peak RSS of a fresh subprocess per setting).

    python benchmarks/referring.py                         # ViT-B + BERT, CPU, one thread
    python benchmarks/referring.py --device cuda --threads 0
    python benchmarks/referring.py --tiny                  # seconds: proves the script works
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import defaultdict

import torch

PARTS = ("vit_blocks", "fusion", "deformable_attention", "decoder")
TOKENS = 20
KIB = 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args: argparse.Namespace) -> torch.nn.Module:
    import transformers

    from samkit.referring.build import build_refersam

    if args.tiny:
        text = transformers.BertConfig(vocab_size=128, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32)
        return build_refersam("tiny", text, seed=0)
    return build_refersam(args.sam, transformers.BertConfig(), seed=0)


def inputs(batch: int, size: int, vocab: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    images = torch.randn(batch, 3, size, size, device=device)
    ids = torch.randint(1, vocab, (batch, TOKENS), device=device)
    mask = torch.ones(batch, TOKENS, dtype=torch.long, device=device)
    return images, ids, mask


def part_modules(model: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
    from samkit.referring.fusion import PromptAttnLayer, VLBiAttnLayer
    from samkit.referring.msda import MultiScaleDeformableAttention

    decoder = model.sam_mask_decoder
    return {
        "vit_blocks": list(model.vl_adapter.vis_model.blocks),
        "fusion": [m for m in model.modules() if isinstance(m, (VLBiAttnLayer, PromptAttnLayer))],
        "deformable_attention": [m for m in model.modules() if isinstance(m, MultiScaleDeformableAttention)],
        "decoder": [decoder.transformer, decoder.output_upscaling, *decoder.output_hypernetworks_mlps],
    }


def timed_parts(model: torch.nn.Module, device: torch.device) -> tuple[dict[str, float], list]:
    totals: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}
    handles = []
    for part, modules in part_modules(model).items():
        for module in modules:
            def pre(hooked, args):
                _sync(device)
                starts[id(hooked)] = time.perf_counter()

            def post(hooked, args, out, part=part):
                _sync(device)
                totals[part] += time.perf_counter() - starts[id(hooked)]

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    return totals, handles


def _set_msda_method(model: torch.nn.Module, method: str) -> None:
    from samkit.referring.msda import MultiScaleDeformableAttention

    for module in model.modules():
        if isinstance(module, MultiScaleDeformableAttention):
            module.method = method


def _timed_forward(model: torch.nn.Module, batch: tuple, repeats: int, device: torch.device) -> tuple[float, dict]:
    """Seconds per forward and seconds per part (after one warm-up)."""
    model(*batch)
    totals, handles = timed_parts(model, device)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        model(*batch)
    _sync(device)
    elapsed = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    return elapsed / repeats, {part: totals[part] / repeats for part in PARTS}


def inference(model: torch.nn.Module, size: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Images/s and cost split with samkit's deformable attention, then the same forward with mmcv's formulation."""
    vocab = model.text_encoder.config.vocab_size
    batch = inputs(1, size, vocab, device)
    with torch.inference_mode():
        seconds, parts = _timed_forward(model, batch, repeats, device)
        _set_msda_method(model, "reference")
        try:
            mmcv_seconds, mmcv_parts = _timed_forward(model, batch, repeats, device)
        finally:
            _set_msda_method(model, "auto")
    result = {"image_size": size, "images_per_s": 1 / seconds, "s_per_image": seconds}
    result.update({f"share_{part}": parts[part] / seconds for part in PARTS})
    result.update({
        "deformable_attention_s": parts["deformable_attention"],
        "mmcv_formulation_deformable_attention_s": mmcv_parts["deformable_attention"],
        "mmcv_formulation_s_per_image": mmcv_seconds,
        "deformable_attention_speedup": mmcv_parts["deformable_attention"] / parts["deformable_attention"],
    })
    return result


def train_step(args: argparse.Namespace, checkpointing: bool) -> dict[str, float]:
    device = torch.device(args.device)
    model = build(args).to(device).train()
    model.set_activation_checkpointing(checkpointing)
    batch = inputs(args.train_batch, args.train_size, model.text_encoder.config.vocab_size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.train_repeats + 1):
        _sync(device)
        start = time.perf_counter()
        pred, coarse = model(*batch)
        (pred.sigmoid().mean() + coarse.sigmoid().mean()).backward()
        _sync(device)
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB  # MiB (Linux reports KiB)
    return {"activation_checkpointing": checkpointing, "batch": args.train_batch, "step_s": min(times[1:]), "peak_mib": peak}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sam", default="vit_b", choices=("vit_b", "vit_l", "vit_h"))
    parser.add_argument("--sizes", default="448,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=448)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--train-repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    parser.add_argument("--tiny", action="store_true", help="tiny model, small sizes: proves the script works")
    parser.add_argument("--train-only", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        args.sizes, args.train_size, args.repeats, args.train_repeats = "64,128", 64, 1, 1
    if args.train_only is not None:
        print(json.dumps(train_step(args, args.train_only == "on")))
        return
    device = torch.device(args.device)
    model = build(args).to(device).eval()
    report = {"model": "tiny" if args.tiny else f"{args.sam}+bert-base", "device": args.device,
              "inference": [inference(model, int(size), args.repeats, device) for size in args.sizes.split(",")]}
    del model
    key = f"training_batch{args.train_batch}"
    report[key] = []
    for setting in ("off", "on"):
        command = [sys.executable, __file__, "--train-only", setting, "--sam", args.sam, "--device", args.device,
                   "--threads", str(args.threads), "--train-size", str(args.train_size),
                   "--train-batch", str(args.train_batch),
                   "--train-repeats", str(args.train_repeats)] + (["--tiny"] if args.tiny else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        report[key].append(json.loads(output.strip().splitlines()[-1]))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
