"""The referring head ReferSAM (planned: declared so ``samkit models`` and ``samkit.load`` can say so)."""

from __future__ import annotations

from samkit.registry import HeadSpec

HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        name="refersam",
        builder="samkit.referring.segmenter:build_referring_segmenter",
        input_kind="image",
        prompt_types=("Text",),
        description="ReferSAM referring image segmentation over SAM (free-form text)",
        default_backbone="sam-vit-b",
        status="planned",
    ),
)
