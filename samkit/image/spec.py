"""The image heads: one per registered backbone, named after it (light: no torch import)."""

from __future__ import annotations

from samkit.backbones.registry import BACKBONES, BackboneSpec
from samkit.registry import HeadSpec, WeightsSpec

BUILDER = "samkit.image.segmenter:build_image_segmenter"
PROMPT_TYPES = ("Points", "Box", "Mask")


def backbone_weights(backbone: BackboneSpec) -> tuple[WeightsSpec, ...]:
    """The official checkpoint of ``backbone`` as a ``WeightsSpec`` (none for the tiny random backbones)."""
    if backbone.checkpoint_filename is None:
        return ()
    return (WeightsSpec(filename=backbone.checkpoint_filename, hf_repo=backbone.hf_repo, url=backbone.download_url,
                        description=f"official {backbone.name} checkpoint"),)


HEADS: tuple[HeadSpec, ...] = tuple(
    HeadSpec(
        name=backbone.name,
        builder=BUILDER,
        input_kind="image",
        prompt_types=PROMPT_TYPES,
        description=backbone.description,
        default_backbone=backbone.name,
        weights=backbone_weights(backbone),
    )
    for backbone in BACKBONES.values()
)
