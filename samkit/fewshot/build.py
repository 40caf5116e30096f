"""Build an ``FSSAM`` from a backbone name: the official SAM 2.0 configs at 512 px, or the tiny test preset.

Weights, in order of precedence: ``checkpoint`` (a whole FSSAM model, official ``{'epoch',
'state_dict', 'optimizer'}`` files included, loaded strictly after stripping ``module.``), else
``sam2_checkpoint`` (public SAM 2.0 weights, e.g. ``sam2_hiera_small.pt``) plus ``dino_checkpoint``
(``dinov2_vitb14_pretrain.pth``) -- the untrained FSSAM start point --, else a seeded random init.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from samkit.errors import InputError

if TYPE_CHECKING:
    import torch

    from samkit.fewshot.model import FSSAM

IMAGE_SIZE = 512
TINY = "tiny"
TINY_IMAGE_SIZE = 128
TINY_DINO_SIZE = 140
"""The tiny preset feeds its tiny ViT 10 x 10 patches (the official 560 px = 40 x 40 is kept for real models)."""
BACKBONES = ("sam2-hiera-small", "sam2-hiera-base-plus", "sam2-hiera-large")
"""SAM 2.0 (July 2024) backbones of the released FSSAM models (the 2.1 configs differ in keys)."""
TINY_BACKBONE = "tiny-sam2"
SAM2_0_FLAGS = (
    # The tiny SAM 2.1-style config, turned into SAM 2.0's layout (no spatial no-object embedding,
    # no temporal encoding of object pointers) so its keys follow the released FSSAM checkpoints.
    "++model.no_obj_embed_spatial=false",
    "++model.add_tpos_enc_to_obj_ptrs=false",
    "++model.proj_tpos_enc_in_obj_ptrs=false",
    "++model.use_signed_tpos_enc_to_obj_ptrs=false",
)
SEED_OFFSET_DINO = 1


def build_fssam(
    backbone: str = "sam2-hiera-small",
    *,
    dino: str = "vitb14",
    image_size: int | None = None,
    dino_size: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    sam2_checkpoint: str | os.PathLike[str] | None = None,
    dino_checkpoint: str | os.PathLike[str] | None = None,
    official_compat: bool = False,
    seed: int | None = 0,
    device: str | torch.device = "cpu",
) -> FSSAM:
    """An ``FSSAM`` in eval mode. ``backbone="tiny"`` (or ``"tiny-sam2"``) with ``dino="tiny"``: test preset."""
    from samkit.backbones.sam2_models import build_sam2_model
    from samkit.fewshot.dino import TINY_DINO, VITB14, build_dino
    from samkit.fewshot.model import DINO_SIZE, FSSAM

    tiny = backbone in (TINY, TINY_BACKBONE)
    if not tiny and backbone not in BACKBONES:
        raise InputError(f"unknown FSSAM backbone {backbone!r}; choose one of {', '.join(BACKBONES + (TINY,))}")
    if dino not in ("vitb14", TINY):
        raise InputError(f"unknown DINOv2 variant {dino!r}; choose 'vitb14' (the released models) or 'tiny' (tests)")
    size = image_size if image_size is not None else (TINY_IMAGE_SIZE if tiny else IMAGE_SIZE)
    sam = build_sam2_model(
        TINY_BACKBONE if tiny else backbone, image_size=size, apply_postprocessing=False,
        overrides=SAM2_0_FLAGS if tiny else (), seed=seed,
        checkpoint=None if checkpoint is not None else sam2_checkpoint, device=device,
    )
    vit = build_dino(TINY_DINO if dino == TINY else VITB14,
                     checkpoint=None if checkpoint is not None else dino_checkpoint,
                     seed=None if seed is None else seed + SEED_OFFSET_DINO)
    if dino_size is None:
        dino_size = TINY_DINO_SIZE if dino == TINY else DINO_SIZE
    model = FSSAM(sam, vit, official_compat=official_compat, dino_size=dino_size)
    if checkpoint is not None:
        load_fssam_checkpoint(model, checkpoint, backbone=backbone)
    return model.to(device).eval()


def load_fssam_checkpoint(model: FSSAM, checkpoint: str | os.PathLike[str], *, backbone: str) -> None:
    """Load a whole-FSSAM checkpoint strictly; a file of another head or backbone size is an InputError."""
    from samkit.checkpoints import load_into, load_state_dict

    path = Path(checkpoint).expanduser()
    state = load_state_dict(path)
    if not any(key.startswith(("sam2.", "dino.")) for key in state):
        raise InputError(
            f"checkpoint {path} is not an FSSAM checkpoint (keys such as {sorted(state)[:3]}); expected keys "
            "'sam2.*' and 'dino.*' (optionally 'module.'-prefixed, inside {'state_dict': ...}). For public SAM 2.0 "
            "weights use backbone_checkpoint= / sam2_checkpoint="
        )
    expected = model.state_dict()
    probe = "sam2.image_encoder.trunk.pos_embed"
    if probe in state and probe in expected and state[probe].shape != expected[probe].shape:
        raise InputError(
            f"checkpoint {path} was trained with another backbone size (Hiera position embedding "
            f"{tuple(state[probe].shape)}) than {backbone!r} ({tuple(expected[probe].shape)}); "
            f"pass the backbone the checkpoint was trained with ({', '.join(BACKBONES)})"
        )
    load_into(model, state, what=f"FSSAM ({backbone})")
