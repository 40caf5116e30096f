"""Official ReferSAM size configurations (per SAM ViT) and the tiny test configuration."""

from __future__ import annotations

from samkit.referring.adapter import AdapterConfig

OFFICIAL_IMAGE_SIZE = 1024
"""The SAM ViT is built at 1024 px (official ``pos_embed`` / ``rel_pos`` shapes) and resized at run time."""
DEFAULT_IMAGE_SIZE = 448

ADAPTER_CONFIGS: dict[str, AdapterConfig] = {
    "vit_b": AdapterConfig(interaction_indexes=((0, 2), (3, 5), (6, 8), (9, 11)), num_heads=12, vl_dim=768),
    "vit_l": AdapterConfig(interaction_indexes=((0, 5), (6, 11), (12, 17), (18, 23)), num_heads=16, vl_dim=1024),
    "vit_h": AdapterConfig(interaction_indexes=((0, 7), (8, 15), (16, 23), (24, 31)), num_heads=16, vl_dim=1280),
    # Tiny (tests / demo): samkit's 2-block tiny SAM ViT (width 32); not an official size.
    "tiny": AdapterConfig(interaction_indexes=((0, 0), (1, 1)), num_heads=2, vl_dim=32, conv_inplane=8),
}

BACKBONE_TO_SAM_TYPE = {"sam-vit-b": "vit_b", "sam-vit-l": "vit_l", "sam-vit-h": "vit_h", "tiny-sam": "tiny"}
