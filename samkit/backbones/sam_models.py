"""Build SAM (segment-anything) ViT models at any image size.

``segment_anything.build_sam`` hard-codes a 1024 px input; ``build_sam_vit`` assembles the same
modules the same way (``segment_anything.build_sam._build_sam``) with the image size as a parameter,
so ``image_embedding_size = image_size // 16``. At 1024 px the result is module-for-module the
upstream model, and official checkpoints (bare state_dicts) load strictly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from samkit.backbones.registry import BACKBONES, SAM, SAM_DEFAULT_IMAGE_SIZE, TINY_SAM_CONFIG
from samkit.errors import InputError

if TYPE_CHECKING:
    import torch
    from segment_anything.modeling import Sam

PATCH_SIZE = 16
PROMPT_EMBED_DIM = 256
MLP_RATIO = 4
LAYER_NORM_EPS = 1e-6
MASK_IN_CHANS = 16
DECODER_DEPTH = 2
DECODER_MLP_DIM = 2048
DECODER_HEADS = 8
NUM_MULTIMASK_OUTPUTS = 3
IOU_HEAD_DEPTH = 3
IOU_HEAD_HIDDEN_DIM = 256
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamVitDims:
    """The image-encoder hyperparameters that differ between SAM ViT sizes."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14


# As in segment_anything.build_sam.build_sam_vit_{b,l,h}.
SAM_VIT_DIMS: dict[str, SamVitDims] = {
    "vit_b": SamVitDims(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": SamVitDims(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": SamVitDims(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}


def _check_image_size(image_size: object) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 or image_size % PATCH_SIZE:
        raise InputError(f"image_size must be a positive multiple of {PATCH_SIZE} for SAM, got {image_size!r}")
    return image_size


def build_sam_vit(dims: SamVitDims, image_size: int = SAM_DEFAULT_IMAGE_SIZE, seed: int | None = None) -> Sam:
    """A randomly initialised ``segment_anything`` ``Sam`` in eval mode (seeded when ``seed`` is given)."""
    import torch

    image_size = _check_image_size(image_size)
    if seed is None:
        return _assemble(dims, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _assemble(dims, image_size)


def _assemble(dims: SamVitDims, image_size: int) -> Sam:
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    image_embedding_size = image_size // PATCH_SIZE
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=dims.depth,
            embed_dim=dims.embed_dim,
            img_size=image_size,
            mlp_ratio=MLP_RATIO,
            norm_layer=partial(torch.nn.LayerNorm, eps=LAYER_NORM_EPS),
            num_heads=dims.num_heads,
            patch_size=PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=dims.global_attn_indexes,
            window_size=dims.window_size,
            out_chans=PROMPT_EMBED_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(image_embedding_size, image_embedding_size),
            input_image_size=(image_size, image_size),
            mask_in_chans=MASK_IN_CHANS,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=NUM_MULTIMASK_OUTPUTS,
            transformer=TwoWayTransformer(
                depth=DECODER_DEPTH,
                embedding_dim=PROMPT_EMBED_DIM,
                mlp_dim=DECODER_MLP_DIM,
                num_heads=DECODER_HEADS,
            ),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=IOU_HEAD_DEPTH,
            iou_head_hidden_dim=IOU_HEAD_HIDDEN_DIM,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return sam.eval()


def build_sam_model(
    name: str,
    *,
    image_size: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    seed: int | None = None,
) -> Sam:
    """A SAM ViT (``sam-vit-b/l/h`` or ``tiny-sam``) in eval mode, with its checkpoint loaded strictly.

    ``checkpoint`` is a local file or a known id (see ``samkit.hub``); ``None`` keeps the random init.
    """
    from samkit.checkpoints import load_into
    from samkit.hub import resolve_checkpoint

    spec = BACKBONES.get(name)
    if spec is None or spec.family != SAM:
        sam_names = [key for key, entry in BACKBONES.items() if entry.family == SAM]
        raise InputError(f"unknown SAM backbone {name!r}; known: {', '.join(sam_names)}")
    if spec.config == TINY_SAM_CONFIG:
        from samkit.backbones.tiny import TINY_SAM_DIMS

        dims = TINY_SAM_DIMS
    else:
        dims = SAM_VIT_DIMS[spec.config]
    model = build_sam_vit(dims, spec.image_size if image_size is None else image_size, seed=seed)
    if checkpoint is not None:
        load_into(model, resolve_checkpoint(checkpoint, spec), what=f"{name} model")
    return model.to(device)
