"""The few-shot head FSSAM: its registry entry (light: no torch import)."""

from __future__ import annotations

from samkit.registry import HeadSpec, WeightsSpec

OFFICIAL_WEIGHTS_NOTE = (
    "official FSSAM checkpoint from exp.zip (SharePoint link in the README of github.com/Sam1224/FSSAM), "
    "exp/<pascal|coco>/<FSSAM|FSSAM5s>/split<k>/<small|base|large>/snapshot/{name}; no direct download: "
    "pass the extracted file as checkpoint= with the matching backbone= (5-shot files: official_compat=True)"
)

HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        name="fssam",
        builder="samkit.fewshot.segmenter:build_fewshot_segmenter",
        input_kind="image",
        prompt_types=("SupportSet",),
        description="FSSAM few-shot segmentation over SAM 2.0 + DINOv2 (support images + masks)",
        default_backbone="sam2-hiera-small",
        weights=(
            WeightsSpec(filename="best_1shot.pth", description=OFFICIAL_WEIGHTS_NOTE.format(name="best_1shot.pth")),
            WeightsSpec(filename="best_5shot.pth", description=OFFICIAL_WEIGHTS_NOTE.format(name="best_5shot.pth")),
        ),
        status="available",
    ),
)
