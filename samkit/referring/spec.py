"""The referring head ReferSAM (no official weights exist: train it with samkit, or load your own checkpoint)."""

from __future__ import annotations

from samkit.registry import HeadSpec

HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        name="refersam",
        builder="samkit.referring.segmenter:build_referring_segmenter",
        input_kind="image",
        prompt_types=("Text",),
        description="ReferSAM referring image segmentation over SAM (free-form text; BERT or CLIP text encoder)",
        default_backbone="sam-vit-b",
    ),
)
