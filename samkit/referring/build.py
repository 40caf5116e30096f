"""Build ReferSAM (untrained start point from a SAM ``.pth`` + a text model) and load official-layout checkpoints."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from samkit.checkpoints import LoadReport, describe_keys, load_into, load_state_dict
from samkit.errors import InputError
from samkit.referring.config import ADAPTER_CONFIGS, OFFICIAL_IMAGE_SIZE
from samkit.referring.model import ReferSAM
from samkit.referring.text import build_text_encoder

SAM_PREFIX_MAP = {
    "image_encoder.": "vl_adapter.vis_model.",
    "prompt_encoder.": "sam_prompt_encoder.",
    "mask_decoder.": "sam_mask_decoder.",
}
TOLERATED_BUFFER_KEYS = (
    "text_encoder.embeddings.position_ids",
    "text_encoder.embeddings.token_type_ids",
    "text_encoder.text_model.embeddings.position_ids",
)
"""Buffers persistent in some ``transformers`` versions only; dropped from checkpoints before strict loading."""
VIT_WIDTH_TO_SAM_TYPE = {768: "vit_b", 1024: "vit_l", 1280: "vit_h", 32: "tiny"}
PATCH_EMBED_KEY = "vl_adapter.vis_model.patch_embed.proj.weight"


def build_sam(sam_type: str, checkpoint: str | os.PathLike[str] | None = None, seed: int | None = None) -> nn.Module:
    """The ``segment_anything`` SAM of ``sam_type`` (vit_b / vit_l / vit_h / tiny) at its checkpoint size."""
    from samkit.backbones.registry import TINY_SAM_IMAGE_SIZE
    from samkit.backbones.sam_models import SAM_VIT_DIMS, build_sam_vit
    from samkit.backbones.tiny import TINY_SAM_DIMS

    if sam_type not in ADAPTER_CONFIGS:
        raise InputError(f"unknown SAM type {sam_type!r}; expected one of {', '.join(ADAPTER_CONFIGS)}")
    if sam_type == "tiny":
        sam = build_sam_vit(TINY_SAM_DIMS, TINY_SAM_IMAGE_SIZE, seed=seed)
    else:
        sam = build_sam_vit(SAM_VIT_DIMS[sam_type], OFFICIAL_IMAGE_SIZE, seed=seed)
    if checkpoint is not None:
        load_into(sam, checkpoint, what=f"SAM {sam_type}")
    return sam


def build_refersam(
    sam_type: str = "vit_b",
    text_encoder: str | os.PathLike[str] | Any = "bert-base-uncased",
    *,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    text_pretrained: bool = True,
    official_compat: bool = False,
    seed: int | None = None,
) -> ReferSAM:
    """ReferSAM with SAM weights from ``sam_checkpoint`` (strict) and a text model (path / hub id / config / module).

    The new VLI / VLP modules get the official initialisation (seeded when ``seed`` is given).
    """
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        sam = build_sam(sam_type, sam_checkpoint)
        text = text_encoder if isinstance(text_encoder, nn.Module) else build_text_encoder(text_encoder, pretrained=text_pretrained)
        return ReferSAM(sam, text, ADAPTER_CONFIGS[sam_type], official_compat=official_compat).eval()


def sam_state_to_refersam(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a SAM ``.pth`` state_dict to ReferSAM keys (``image_encoder.`` -> ``vl_adapter.vis_model.`` ...)."""
    renamed = {}
    for key, value in state.items():
        prefix = next((p for p in SAM_PREFIX_MAP if key.startswith(p)), None)
        if prefix is None:
            raise InputError(f"key {key!r} is not a SAM key (expected prefixes {', '.join(SAM_PREFIX_MAP)})")
        renamed[SAM_PREFIX_MAP[prefix] + key[len(prefix):]] = value
    return renamed


def checkpoint_head_and_backbone(state: Mapping[str, torch.Tensor]) -> tuple[str, str | None]:
    """Guess which head and SAM type a state_dict belongs to, for error messages."""
    if PATCH_EMBED_KEY in state:
        return "refersam", VIT_WIDTH_TO_SAM_TYPE.get(int(state[PATCH_EMBED_KEY].shape[0]))
    if any(key.startswith("image_encoder.trunk.") for key in state):
        return "a SAM 2 model (sam2 / sam2long)", None
    if "image_encoder.patch_embed.proj.weight" in state:
        return "a bare SAM backbone", VIT_WIDTH_TO_SAM_TYPE.get(int(state["image_encoder.patch_embed.proj.weight"].shape[0]))
    return "an unknown model", None


def load_refersam_checkpoint(
    model: ReferSAM, source: Mapping[str, torch.Tensor] | str | os.PathLike[str], *, sam_type: str | None = None
) -> LoadReport:
    """Load an official-layout ReferSAM state_dict (wrapped / ``module.``-prefixed files too).

    The ``transformers``-version buffers in ``TOLERATED_BUFFER_KEYS`` are dropped first; then the load
    is strict, except under ``model.official_compat`` (the official loader used ``strict=False``:
    the missing / unexpected keys are then only warned about).
    """
    state = dict(source) if isinstance(source, Mapping) else load_state_dict(source)
    head, found_type = checkpoint_head_and_backbone(state)
    if head != "refersam" or (sam_type is not None and found_type is not None and found_type != sam_type):
        found = head + (f" ({found_type})" if found_type else "")
        raise InputError(f"the checkpoint holds {found}, but a refersam ({sam_type or 'any SAM type'}) checkpoint is needed")
    state = {key: value for key, value in state.items() if key not in TOLERATED_BUFFER_KEYS}
    if not model.official_compat:
        return load_into(model, state, what="ReferSAM model")
    report = load_into(model, state, strict=False, what="ReferSAM model")
    if report.missing or report.unexpected:
        warnings.warn(
            "official_compat: loaded non-strictly; missing:\n" + describe_keys(report.missing)
            + "\nunexpected:\n" + describe_keys(report.unexpected),
            stacklevel=2,
        )
    return report
