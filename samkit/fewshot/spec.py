"""The few-shot head FSSAM (planned: declared so ``samkit models`` and ``samkit.load`` can say so)."""

from __future__ import annotations

from samkit.registry import HeadSpec

HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        name="fssam",
        builder="samkit.fewshot.segmenter:build_fewshot_segmenter",
        input_kind="image",
        prompt_types=("SupportSet",),
        description="FSSAM few-shot segmentation over SAM 2 (support images + masks)",
        default_backbone="sam2-hiera-small",
        status="planned",
    ),
)
