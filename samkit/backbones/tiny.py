"""Tiny randomly initialised SAM 2 / SAM models for tests and demos: built in-process, in well under a second.

``tiny-sam2`` keeps every flag of ``sam2.1_hiera_t.yaml`` (memory attention and encoder, object
pointers, multimask tracking, object scores ...) so SAM 2 video tracking runs on it unchanged; only
the Hiera trunk, the memory-attention depth / feed-forward width and the input size shrink (see
``samkit/configs/tiny/tiny_sam2.yaml``). ``tiny-sam`` is a 2-block ViT with SAM's own prompt encoder
and mask decoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from samkit.backbones.registry import TINY_SAM2_IMAGE_SIZE, TINY_SAM_IMAGE_SIZE
from samkit.backbones.sam_models import SamVitDims, build_sam_vit

if TYPE_CHECKING:
    import torch
    from segment_anything.modeling import Sam

TINY_SAM_DIMS = SamVitDims(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4)


def build_tiny_sam2(
    seed: int = 0,
    image_size: int = TINY_SAM2_IMAGE_SIZE,
    video: bool = False,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """The tiny SAM 2.1-style ``SAM2Base`` (``video=True``: ``SAM2VideoPredictor``), seeded random init."""
    from samkit.backbones.sam2_models import build_sam2_model

    return build_sam2_model("tiny-sam2", image_size=image_size, video=video, seed=seed, device=device)


def build_tiny_sam(seed: int = 0, image_size: int = TINY_SAM_IMAGE_SIZE, device: str | torch.device = "cpu") -> Sam:
    """The tiny SAM ViT (``segment_anything`` ``Sam``), seeded random init, eval mode."""
    return build_sam_vit(TINY_SAM_DIMS, image_size, seed=seed).to(device)
