"""Checkpoint resolution: a local path, or a known id downloaded once into samkit's cache.

Known ids of a backbone are its registry name (``sam2.1-hiera-tiny``), its Hugging Face repo
(``facebook/sam2.1-hiera-tiny``) and its official filename (``sam2.1_hiera_tiny.pt``,
``sam_vit_b_01ec64.pth``). Cached files live in ``$SAMKIT_HOME/checkpoints/<filename>``
(``SAMKIT_HOME`` defaults to ``~/.cache/samkit``). With ``SAMKIT_OFFLINE`` or ``HF_HUB_OFFLINE`` set
nothing is downloaded: a missing file is an error that says where to put it and where to get it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from samkit.backbones.registry import BACKBONES, BackboneSpec, get_backbone
from samkit.errors import InputError

if TYPE_CHECKING:
    from samkit.registry import WeightsSpec

HOME_ENV = "SAMKIT_HOME"
OFFLINE_ENVS = ("SAMKIT_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_HOME = Path("~/.cache/samkit")
CHECKPOINT_SUBDIR = "checkpoints"
FALSE_VALUES = ("", "0", "false", "no", "off")
HASH_BLOCK_BYTES = 1 << 20

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
    return _describe_source(spec.hf_repo, spec.download_url)


def _describe_source(hf_repo: str | None, url: str | None) -> str:
    if hf_repo is not None:
        return f"the Hugging Face repo {hf_repo} ({url})" if url else f"the Hugging Face repo {hf_repo}"
    return str(url)


def _download(spec: BackboneSpec, destination: Path) -> Path:
    return _download_file(str(spec.checkpoint_filename), spec.hf_repo, spec.url, f"backbone {spec.name!r}",
                          destination, source=_source(spec))


def _download_file(filename: str, hf_repo: str | None, url: str | None, owner: str, destination: Path,
                   source: str) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    logger.warning("samkit: downloading %s from %s to %s", filename, source, destination)
    try:
        if hf_repo is not None:
            _download_from_hf(hf_repo, filename, destination)
        else:
            _download_from_url(str(url), destination)
    except Exception as error:  # any network / hub failure gets the same actionable message
        raise InputError(
            f"could not download checkpoint {filename} for {owner} ({error}). "
            f"Download it from {source} and put it at {destination}"
        ) from error
    if not destination.is_file():
        raise InputError(f"download of {filename} did not produce {destination}; "
                         f"download it from {source} and put it there")
    return destination


def resolve_weights(checkpoint: str | os.PathLike[str], weights: Sequence[WeightsSpec], owner: str) -> Path:
    """Turn ``checkpoint`` (a local file, or a file name / hub repo / URL of one of ``weights``) into a local
    file, downloading a known file once into the cache and checking its sha256 when one is published."""
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise InputError(f"checkpoint {path} is a directory; give the checkpoint file itself")
    text = str(checkpoint)
    match = next((item for item in weights if text in item.known_ids), None)
    if match is None:
        known = [known_id for item in weights for known_id in item.known_ids]
        hint = f" or one of the published weights of {owner}: {', '.join(known)}" if known else ""
        raise InputError(f"checkpoint file {text} does not exist; give a local checkpoint file{hint}")
    cached = samkit_home() / CHECKPOINT_SUBDIR / match.filename
    source = _describe_source(match.hf_repo, match.url)
    if not cached.is_file():
        if is_offline():
            raise InputError(f"checkpoint {match.filename} of {owner} is not cached and downloads are off "
                             f"({' / '.join(OFFLINE_ENVS)} is set). Download it from {source} and put it at {cached}")
        if match.hf_repo is None and match.url is None:
            raise InputError(f"checkpoint {match.filename} of {owner} has no download location; put it at {cached}")
        _download_file(match.filename, match.hf_repo, match.url, owner, cached, source=source)
    if match.sha256 is not None and _sha256(cached) != match.sha256.lower():
        raise InputError(f"checkpoint {cached} does not match the published sha256 of {match.filename} "
                         f"({match.sha256}); delete it and download it again from {source}")
    return cached


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_from_hf(hf_repo: str, filename: str, destination: Path) -> None:
    import huggingface_hub

    downloaded = Path(huggingface_hub.hf_hub_download(repo_id=hf_repo, filename=filename, local_dir=destination.parent))
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
