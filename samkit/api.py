"""The Segmenter base class, the model registry and ``samkit.load``.

Heads register a builder under a name; ``load`` looks the name up, builds the segmenter on the
requested device and loads its checkpoint. Registration is lazy (a dotted path), so listing models
imports nothing heavy.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samkit.errors import InputError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device != "auto":
        try:
            return torch.device(device)
        except RuntimeError as error:
            raise InputError(f"device={device!r} is not a valid torch device ({error}); use 'auto', 'cpu', 'cuda'") from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Segmenter(abc.ABC):
    """One segmentation method behind ``predict``: a head over a SAM / SAM 2 backbone.

    Subclasses set ``model`` (the ``nn.Module``), ``config`` (a dict) and ``device``.
    """

    model: torch.nn.Module
    config: dict[str, Any]
    device: torch.device

    @classmethod
    def from_config(
        cls,
        path_or_dict: str | Path | Mapping[str, Any],
        checkpoint: str | Path | None = None,
        device: str | torch.device = "auto",
    ) -> Segmenter:
        """Build from a YAML file or a dict with a ``model`` key naming a registered model."""
        from samkit.config import read_config

        config = dict(read_config(path_or_dict))
        name = config.pop("model", None)
        if name is None:
            raise InputError("a samkit config needs a 'model' key naming a registered model (see samkit.list_models())")
        entry = get_entry(name)
        segmenter = entry.build(checkpoint=checkpoint, device=device, **config)
        if not isinstance(segmenter, cls):
            raise InputError(f"config model {name!r} builds a {type(segmenter).__name__}, not a {cls.__name__}")
        return segmenter

    @abc.abstractmethod
    def predict(self, inputs: Any, prompt: Any = None, prompts: Any = None, **kwargs: Any) -> Any:
        """Segment ``inputs`` (an image or a video) given one prompt or a dict of per-object prompts."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.config.get('name', '?')!r}, device={self.device})"


@dataclass(frozen=True)
class RegistryEntry:
    """A registered model: its name, kind ('head' or 'backbone') and a lazy builder path."""

    name: str
    kind: str
    builder: str
    description: str

    def build(self, **kwargs: Any) -> Segmenter:
        module_name, _, attribute = self.builder.partition(":")
        builder: Callable[..., Segmenter] = getattr(importlib.import_module(module_name), attribute)
        return builder(self.name, **kwargs)


_REGISTRY: dict[str, RegistryEntry] = {}


def register(name: str, kind: str, builder: str, description: str = "") -> None:
    """Register ``builder`` ("module:function", called as ``function(name, **kwargs)``) under ``name``."""
    if kind not in ("head", "backbone"):
        raise ValueError(f"kind must be 'head' or 'backbone', got {kind!r}")
    _REGISTRY[name] = RegistryEntry(name, kind, builder, description)


def get_entry(name: str) -> RegistryEntry:
    """The registry entry for ``name``; an unknown name is an InputError listing the known ones."""
    _register_builtins()
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models(kind: str | None = None) -> list[str]:
    """Names ``samkit.load`` accepts: heads first, then backbones (each usable as an image segmenter)."""
    _register_builtins()
    entries = [entry for entry in _REGISTRY.values() if kind is None or entry.kind == kind]
    return [entry.name for entry in sorted(entries, key=lambda entry: (entry.kind != "head", entry.name))]


def registry_entries() -> list[RegistryEntry]:
    """Every registered model, in ``list_models`` order."""
    return [get_entry(name) for name in list_models()]


def load(
    name: str,
    *,
    backbone: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    **overrides: Any,
) -> Segmenter:
    """Build the segmenter registered as ``name``; ``checkpoint`` is a local path or a known model id."""
    entry = get_entry(name)
    if entry.kind == "backbone":
        if backbone is not None and backbone != name:
            raise InputError(f"{name!r} is itself a backbone; drop backbone={backbone!r}")
        return entry.build(checkpoint=checkpoint, device=device, **overrides)
    if backbone is not None:
        overrides["backbone"] = backbone
    return entry.build(checkpoint=checkpoint, device=device, **overrides)


_BUILTINS_REGISTERED = False


def _register_builtins() -> None:
    global _BUILTINS_REGISTERED
    if _BUILTINS_REGISTERED:
        return
    _BUILTINS_REGISTERED = True
    from samkit.backbones.registry import BACKBONES

    for spec in BACKBONES.values():
        register(spec.name, "backbone", "samkit.backbones.image_segmenter:build_image_segmenter", spec.description)
    for name, builder, description in _HEADS:
        register(name, "head", builder, description)


_HEADS: list[tuple[str, str, str]] = [
    (
        "sam2long",
        "samkit.longvideo.segmenter:build_longvideo_segmenter",
        "SAM2Long long-video object segmentation: memory tree over SAM 2 (points / box / mask per object)",
    ),
    (
        "sam2",
        "samkit.longvideo.segmenter:build_longvideo_segmenter",
        "SAM 2 video object segmentation (the sam2long head with TreeConfig.sam2(): exactly SAM 2)",
    ),
]
