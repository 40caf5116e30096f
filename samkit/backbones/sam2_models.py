"""Build SAM 2 models from a registry name, a config inside the ``sam2`` package, or any YAML file.

``sam2.build_sam.build_sam2`` only takes Hydra config *names* found on Hydra's global search path
(sam2#531); here the YAML is read with OmegaConf and instantiated with ``hydra.utils.instantiate``
directly, after applying the same ``++model.*`` overrides ``build_sam2`` /
``build_sam2_video_predictor`` apply. Importing ``sam2`` (which initialises Hydra globally) happens
only inside the builder.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samkit.backbones.registry import BACKBONES, SAM2, TINY_SAM2_CONFIG, BackboneSpec
from samkit.errors import InputError

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

IMAGE_SIZE_MULTIPLE = 32
"""Hiera downsamples by 32 and tiles its 8x8 window position embedding over the stride-4 grid."""

VIDEO_PREDICTOR_TARGET = "sam2.sam2_video_predictor.SAM2VideoPredictor"

# The overrides sam2.build_sam applies when apply_postprocessing=True (sam2==1.1.0).
IMAGE_POSTPROCESSING_OVERRIDES = (
    # dynamically fall back to multi-mask if the single mask is not stable
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
VIDEO_POSTPROCESSING_OVERRIDES = IMAGE_POSTPROCESSING_OVERRIDES + (
    # binarize the sigmoid mask logits on clicked frames for the memory encoder
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    # fill small holes in the low-res masks up to this area before resizing to the video resolution
    "++model.fill_hole_area=8",
)
MODES = ("eval", "train")


def sam2_package_dir() -> Path:
    """The installed ``sam2`` package folder, found without importing it (no Hydra side effects)."""
    spec = importlib.util.find_spec("sam2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the 'sam2' package is not installed; pip install sam2==1.1.0")
    return Path(next(iter(spec.submodule_search_locations)))


def available_sam2_configs() -> list[str]:
    """Model config names shipped by the ``sam2`` package, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``."""
    import yaml

    root = sam2_package_dir()
    names = []
    for path in sorted((root / "configs").rglob("*.yaml")):
        content = yaml.safe_load(path.read_text())
        if isinstance(content, dict) and isinstance(content.get("model"), dict):
            names.append(path.relative_to(root).as_posix())
    return names


def tiny_sam2_config_path() -> Path:
    """The tiny SAM 2.1-style YAML shipped with samkit."""
    relative = TINY_SAM2_CONFIG.partition(":")[2]
    return Path(str(importlib.resources.files("samkit").joinpath(relative)))


def resolve_sam2_config(name_or_yaml: str | os.PathLike[str]) -> tuple[Path, BackboneSpec | None]:
    """Find the YAML file for a registry name, a sam2 config name or a YAML path (and its spec, if any)."""
    text = str(name_or_yaml)
    spec = BACKBONES.get(text)
    if spec is not None:
        if spec.family != SAM2:
            raise InputError(f"backbone {text!r} is a SAM (segment-anything) model; build it with build_sam_model")
        path = tiny_sam2_config_path() if spec.config == TINY_SAM2_CONFIG else sam2_package_dir() / spec.config
        return path, spec
    path = Path(text).expanduser()
    if path.is_file():
        return path, None
    root = sam2_package_dir()
    stem = text.removesuffix(".yaml")
    for candidate in (f"{stem}.yaml", f"configs/{stem}.yaml"):
        if (root / candidate).is_file():
            return root / candidate, None
    matches = [name for name in available_sam2_configs() if name.endswith(f"/{stem}.yaml")]
    if len(matches) == 1:
        return root / matches[0], None
    sam2_names = [name for name, entry in BACKBONES.items() if entry.family == SAM2]
    raise InputError(
        f"no SAM 2 config {text!r}: give a YAML file path, a backbone name ({', '.join(sam2_names)}) "
        f"or a sam2 config ({', '.join(available_sam2_configs())})"
    )


def _normalise_override(override: str) -> str:
    """``++model.a=1`` / ``+model.a=1`` / ``model.a=1`` -> ``model.a=1`` (Hydra add-or-set semantics)."""
    body = override.lstrip("+")
    if body.startswith("~") or "=" not in body:
        raise InputError(f"unsupported override {override!r}; use 'key=value' or '++key=value' (deletions with ~ are "
                         "not supported)")
    return body


def load_sam2_config(
    path: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    video: bool = False,
    overrides: Iterable[str] = (),
    apply_postprocessing: bool = True,
) -> DictConfig:
    """Read a SAM 2 YAML and apply overrides in ``build_sam2`` order: target, user, post-processing."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    try:
        config = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, ValueError) as error:
        raise InputError(f"SAM 2 config {path} could not be read: {error}") from None
    if "model" not in config:
        raise InputError(f"SAM 2 config {path} has no top-level 'model' section; expected a sam2 model config "
                         "such as configs/sam2.1/sam2.1_hiera_t.yaml")
    all_overrides = [f"++model._target_={VIDEO_PREDICTOR_TARGET}"] if video else []
    if image_size is not None:
        all_overrides.append(f"++model.image_size={_check_image_size(image_size)}")
    all_overrides.extend(overrides)
    if apply_postprocessing:
        all_overrides.extend(VIDEO_POSTPROCESSING_OVERRIDES if video else IMAGE_POSTPROCESSING_OVERRIDES)
    try:
        config = OmegaConf.merge(config, OmegaConf.from_dotlist([_normalise_override(item) for item in all_overrides]))
        OmegaConf.resolve(config)
    except OmegaConfBaseException as error:
        raise InputError(f"SAM 2 config {path}: overrides {list(overrides)} could not be applied: {error}") from None
    return config


def _check_image_size(image_size: Any) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 \
            or image_size % IMAGE_SIZE_MULTIPLE:
        raise InputError(f"image_size must be a positive multiple of {IMAGE_SIZE_MULTIPLE} for SAM 2, got {image_size!r}")
    return image_size


def instantiate_seeded(config: Any, seed: int | None) -> Any:
    """``hydra.utils.instantiate`` under ``torch.manual_seed(seed)`` without touching the global RNG."""
    import torch
    from hydra.utils import instantiate

    if seed is None:
        return instantiate(config, _recursive_=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return instantiate(config, _recursive_=True)


def build_sam2_model(
    name_or_yaml: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    mode: str = "eval",
    video: bool = False,
    overrides: Iterable[str] = (),
    apply_postprocessing: bool = True,
    seed: int | None = None,
) -> torch.nn.Module:
    """A ``SAM2Base`` (or, with ``video=True``, a ``SAM2VideoPredictor``) from a name or a YAML file.

    ``image_size=N`` equals the Hydra override ``++model.image_size=N``. ``checkpoint`` is a local file
    or a known id of the backbone (see ``samkit.hub``), loaded strictly; ``None`` keeps the random
    init (seeded by ``seed`` when given). ``apply_postprocessing`` mirrors ``sam2.build_sam``.
    """
    from hydra.errors import HydraException

    from samkit.checkpoints import load_into
    from samkit.hub import resolve_checkpoint

    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    path, spec = resolve_sam2_config(name_or_yaml)
    config = load_sam2_config(path, image_size=image_size, video=video, overrides=overrides,
                              apply_postprocessing=apply_postprocessing)
    try:
        model = instantiate_seeded(config.model, seed)
    except HydraException as error:
        raise InputError(f"SAM 2 config {path} could not be instantiated: {error}") from None
    if checkpoint is not None:
        checkpoint_path = resolve_checkpoint(checkpoint, spec) if spec is not None else _local_file(checkpoint)
        load_into(model, checkpoint_path, what=f"{spec.name} model" if spec else f"SAM 2 model from {path.name}")
    model = model.to(device)
    return model.eval() if mode == "eval" else model.train()


def _local_file(checkpoint: str | os.PathLike[str]) -> Path:
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise InputError(f"checkpoint file {path} does not exist; with a YAML config give a local checkpoint file")
    return path
