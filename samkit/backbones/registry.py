"""The backbone registry: names, upstream configs, official checkpoints and where to get them.

This module is deliberately light (no torch, sam2 or segment_anything import): ``samkit.list_models``
reads it to list the backbones without building anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from samkit.errors import InputError

SAM2 = "sam2"
SAM = "sam"

SAM2_DEFAULT_IMAGE_SIZE = 1024
SAM_DEFAULT_IMAGE_SIZE = 1024
TINY_SAM2_IMAGE_SIZE = 128
TINY_SAM_IMAGE_SIZE = 128

TINY_SAM2_CONFIG = "samkit:configs/tiny/tiny_sam2.yaml"
"""The tiny SAM 2.1-style config shipped inside samkit (resolved by ``samkit.backbones.sam2_models``)."""
TINY_SAM_CONFIG = "tiny"
"""Marker for the tiny SAM ViT built by ``samkit.backbones.tiny.build_tiny_sam``."""

SAM_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/{filename}"
HF_RESOLVE_URL = "https://huggingface.co/{repo}/resolve/main/{filename}"


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: how to build it and which official checkpoint belongs to it.

    ``config`` is a config path inside the ``sam2`` package (SAM 2), a key of
    ``segment_anything.sam_model_registry`` (SAM), or one of the tiny markers above.
    ``hf_repo`` is set for checkpoints on the Hugging Face Hub, ``url`` for direct downloads.
    """

    name: str
    family: str
    config: str
    image_size: int
    description: str
    checkpoint_filename: str | None = None
    hf_repo: str | None = None
    url: str | None = None

    @property
    def is_tiny(self) -> bool:
        """True for the random-weight test backbones (no official checkpoint exists)."""
        return self.checkpoint_filename is None

    @property
    def download_url(self) -> str | None:
        """Where a user can fetch the official checkpoint by hand (None for tiny backbones)."""
        if self.url is not None:
            return self.url
        if self.hf_repo is not None and self.checkpoint_filename is not None:
            return HF_RESOLVE_URL.format(repo=self.hf_repo, filename=self.checkpoint_filename)
        return None

    @property
    def known_ids(self) -> tuple[str, ...]:
        """Strings accepted as ``checkpoint=`` for this backbone besides a local path."""
        ids = [self.name]
        if self.hf_repo is not None:
            ids.append(self.hf_repo)
        if self.checkpoint_filename is not None:
            ids.append(self.checkpoint_filename)
        return tuple(ids)


_SAM2_SIZES = {
    # registry suffix: (config suffix, checkpoint suffix, description size)
    "tiny": ("t", "tiny", "Hiera-T"),
    "small": ("s", "small", "Hiera-S"),
    "base-plus": ("b+", "base_plus", "Hiera-B+"),
    "large": ("l", "large", "Hiera-L"),
}

_SAM_SIZES = {
    # registry suffix: (segment_anything registry key, official checkpoint filename)
    "b": ("vit_b", "sam_vit_b_01ec64.pth"),
    "l": ("vit_l", "sam_vit_l_0b3195.pth"),
    "h": ("vit_h", "sam_vit_h_4b8939.pth"),
}


def _sam2_specs() -> list[BackboneSpec]:
    specs = []
    for version, config_dir in (("sam2.1", "sam2.1"), ("sam2", "sam2")):
        for size, (config_suffix, checkpoint_suffix, label) in _SAM2_SIZES.items():
            name = f"{version}-hiera-{size}"
            specs.append(
                BackboneSpec(
                    name=name,
                    family=SAM2,
                    config=f"configs/{config_dir}/{version}_hiera_{config_suffix}.yaml",
                    image_size=SAM2_DEFAULT_IMAGE_SIZE,
                    description=f"SAM {'2.1' if version == 'sam2.1' else '2'} {label} image segmenter (sam2)",
                    checkpoint_filename=f"{version}_hiera_{checkpoint_suffix}.pt",
                    hf_repo=f"facebook/{name}",
                )
            )
    return specs


def _sam_specs() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name=f"sam-vit-{size}",
            family=SAM,
            config=key,
            image_size=SAM_DEFAULT_IMAGE_SIZE,
            description=f"SAM ViT-{size.upper()} image segmenter (segment-anything)",
            checkpoint_filename=filename,
            url=SAM_CHECKPOINT_URL.format(filename=filename),
        )
        for size, (key, filename) in _SAM_SIZES.items()
    ]


def _tiny_specs() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name="tiny-sam2",
            family=SAM2,
            config=TINY_SAM2_CONFIG,
            image_size=TINY_SAM2_IMAGE_SIZE,
            description="tiny random SAM 2.1-style model for tests and demos (no trained weights)",
        ),
        BackboneSpec(
            name="tiny-sam",
            family=SAM,
            config=TINY_SAM_CONFIG,
            image_size=TINY_SAM_IMAGE_SIZE,
            description="tiny random SAM ViT for tests and demos (no trained weights)",
        ),
    ]


BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in _sam2_specs() + _sam_specs() + _tiny_specs()}


def get_backbone(name: str) -> BackboneSpec:
    """The spec registered as ``name``; InputError listing the known names otherwise."""
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name]
