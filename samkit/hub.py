"""Checkpoint resolution: a local path, or a known id downloaded once into samkit's cache.

Known ids of a backbone are its registry name (``sam2.1-hiera-tiny``), its Hugging Face repo
(``facebook/sam2.1-hiera-tiny``) and its official filename (``sam2.1_hiera_tiny.pt``,
``sam_vit_b_01ec64.pth``). Cached files live in ``$SAMKIT_HOME/checkpoints/<filename>``
(``SAMKIT_HOME`` defaults to ``~/.cache/samkit``). With ``SAMKIT_OFFLINE`` or ``HF_HUB_OFFLINE`` set
nothing is downloaded: a missing file is an error that says where to put it and where to get it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from samkit.backbones.registry import BACKBONES, BackboneSpec, get_backbone
from samkit.errors import InputError

HOME_ENV = "SAMKIT_HOME"
OFFLINE_ENVS = ("SAMKIT_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_HOME = Path("~/.cache/samkit")
CHECKPOINT_SUBDIR = "checkpoints"
FALSE_VALUES = ("", "0", "false", "no", "off")

logger = logging.getLogger(__name__)


def samkit_home() -> Path:
    """samkit's cache root: ``$SAMKIT_HOME`` or ``~/.cache/samkit``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def checkpoint_cache_path(spec: BackboneSpec) -> Path:
    """Where the official checkpoint of ``spec`` is cached (and where to put it by hand offline)."""
    if spec.checkpoint_filename is None:
        raise InputError(f"backbone {spec.name!r} has no official checkpoint (it is a random test backbone)")
    return samkit_home() / CHECKPOINT_SUBDIR / spec.checkpoint_filename


def is_offline() -> bool:
    """True when ``SAMKIT_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value."""
    return any(os.environ.get(name, "").strip().lower() not in FALSE_VALUES for name in OFFLINE_ENVS)


def resolve_checkpoint(checkpoint: str | os.PathLike[str], backbone_spec: BackboneSpec | str) -> Path:
    """Turn ``checkpoint`` (a local file or a known id of ``backbone_spec``) into a local file path."""
    spec = get_backbone(backbone_spec) if isinstance(backbone_spec, str) else backbone_spec
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise InputError(f"checkpoint {path} is a directory; give the checkpoint file itself")
    text = str(checkpoint)
    if text not in spec.known_ids:
        raise InputError(_unknown_checkpoint_message(text, spec))
    cached = checkpoint_cache_path(spec)
    if cached.is_file():
        return cached
    if is_offline():
        raise InputError(
            f"checkpoint {spec.checkpoint_filename} for backbone {spec.name!r} is not cached and downloads are "
            f"off ({' / '.join(OFFLINE_ENVS)} is set). Download it from {_source(spec)} and put it at {cached}"
        )
    return _download(spec, cached)


def _unknown_checkpoint_message(text: str, spec: BackboneSpec) -> str:
    owner = next((other.name for other in BACKBONES.values() if text in other.known_ids), None)
    if owner is not None:
        return (f"checkpoint {text!r} is the official checkpoint of backbone {owner!r}, not of {spec.name!r}; "
                f"use backbone {owner!r} or one of {list(spec.known_ids) if not spec.is_tiny else 'a local file'}")
    if spec.is_tiny:
        return (f"checkpoint file {text} does not exist; backbone {spec.name!r} is a random test backbone "
                "with no official checkpoint: give a local file or checkpoint=None")
    return (f"checkpoint file {text} does not exist; give a local checkpoint file or one of the known ids of "
            f"{spec.name!r}: {', '.join(spec.known_ids)}")


def _source(spec: BackboneSpec) -> str:
    if spec.hf_repo is not None:
        return f"the Hugging Face repo {spec.hf_repo} ({spec.download_url})"
    return str(spec.download_url)


def _download(spec: BackboneSpec, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    logger.warning("samkit: downloading %s from %s to %s", spec.checkpoint_filename, _source(spec), destination)
    try:
        if spec.hf_repo is not None:
            _download_from_hf(spec, destination)
        else:
            _download_from_url(str(spec.url), destination)
    except Exception as error:  # any network / hub failure gets the same actionable message
        raise InputError(
            f"could not download checkpoint {spec.checkpoint_filename} for backbone {spec.name!r} ({error}). "
            f"Download it from {_source(spec)} and put it at {destination}"
        ) from error
    if not destination.is_file():
        raise InputError(f"download of {spec.checkpoint_filename} did not produce {destination}; "
                         f"download it from {_source(spec)} and put it there")
    return destination


def _download_from_hf(spec: BackboneSpec, destination: Path) -> None:
    import huggingface_hub

    downloaded = Path(huggingface_hub.hf_hub_download(
        repo_id=spec.hf_repo, filename=spec.checkpoint_filename, local_dir=destination.parent
    ))
    if downloaded.resolve() != destination.resolve():
        os.replace(downloaded, destination)


def _download_from_url(url: str, destination: Path) -> None:
    import torch.hub

    handle, temp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    os.close(handle)
    try:
        torch.hub.download_url_to_file(url, temp_name, progress=True)
        os.replace(temp_name, destination)
    finally:
        Path(temp_name).unlink(missing_ok=True)
