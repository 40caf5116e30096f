"""The long-video heads: SAM2Long and plain SAM 2 over one SAM 2 video model (light: no torch import)."""

from __future__ import annotations

from samkit.constants import DEFAULT_SAM2_BACKBONE
from samkit.registry import HeadSpec

BUILDER = "samkit.longvideo.segmenter:build_longvideo_segmenter"
PROMPT_TYPES = ("Points", "Box", "Mask")

HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        name="sam2long",
        builder=BUILDER,
        input_kind="video",
        prompt_types=PROMPT_TYPES,
        description="SAM2Long long-video object segmentation: memory tree over SAM 2 (points / box / mask per object)",
        default_backbone=DEFAULT_SAM2_BACKBONE,
    ),
    HeadSpec(
        name="sam2",
        builder=BUILDER,
        input_kind="video",
        prompt_types=PROMPT_TYPES,
        description="SAM 2 video object segmentation (the sam2long head with TreeConfig.sam2(): exactly SAM 2)",
        default_backbone=DEFAULT_SAM2_BACKBONE,
    ),
)
"""Training-free: their checkpoint is the SAM 2 backbone's file, so they publish no weights of their own."""
