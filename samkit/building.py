"""The one build step every head shares: device, checkpoint resolution, seed and the untrained warning.

A head's builder calls ``prepare`` first and builds its model from the returned ``BuildPlan``, so
``samkit.load`` resolves devices, known checkpoint ids and seeds the same way for every head.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samkit.errors import InputError

if TYPE_CHECKING:
    import torch

    from samkit.backbones.registry import BackboneSpec
    from samkit.registry import HeadSpec, WeightsSpec


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device != "auto":
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise InputError(f"device={device!r} is not a valid torch device ({error}); use 'auto', 'cpu', 'cuda'") from None
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class BuildPlan:
    """What a builder needs besides its own options: where to run, which file to load, how to seed."""

    device: torch.device
    checkpoint: Path | None
    seed: int
    trained: bool

    def config(self) -> dict[str, Any]:
        """The ``checkpoint`` / ``trained`` / ``seed`` entries of a segmenter's ``config`` dict."""
        return {
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "trained": self.trained,
            "seed": None if self.trained else self.seed,
        }


def prepare(
    spec_or_name: HeadSpec | str,
    *,
    device: str | torch.device = "auto",
    checkpoint: str | os.PathLike[str] | None = None,
    seed: int = 0,
    known: BackboneSpec | Sequence[WeightsSpec] | None = None,
) -> BuildPlan:
    """Resolve the device and ``checkpoint`` of a head about to be built.

    ``checkpoint`` is a local file or a known id: of ``known`` (a backbone, for heads whose checkpoint is
    the backbone's file) or else of the head's own published weights (``spec.weights``). A known id of
    another head or backbone is an InputError naming its owner. Without a checkpoint the weights are a
    seeded random init and an ``UntrainedWeightsWarning`` is issued (once, here).
    """
    from samkit.backbones.registry import BackboneSpec
    from samkit.checkpoints import warn_untrained
    from samkit.registry import HeadSpec, get_spec

    spec = get_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    if not isinstance(spec, HeadSpec):
        raise InputError(f"prepare() takes a HeadSpec or a registered name, got {type(spec_or_name).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be an int >= 0, got {seed!r}")
    target = resolve_device(device)
    if checkpoint is None:
        warn_untrained(spec.name)
        return BuildPlan(device=target, checkpoint=None, seed=seed, trained=False)
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise InputError(f"checkpoint must be a file path or a known model id, got {type(checkpoint).__name__}")
    _refuse_foreign_checkpoint(checkpoint, spec, known)
    if isinstance(known, BackboneSpec):
        from samkit.hub import resolve_checkpoint

        resolved = resolve_checkpoint(checkpoint, known)
    else:
        from samkit.hub import resolve_weights

        resolved = resolve_weights(checkpoint, spec.weights if known is None else tuple(known), f"head {spec.name!r}")
    return BuildPlan(device=target, checkpoint=resolved, seed=seed, trained=True)


def _refuse_foreign_checkpoint(checkpoint: str | os.PathLike[str], spec: HeadSpec,
                               known: BackboneSpec | Sequence[WeightsSpec] | None) -> None:
    """A known id of another head or backbone, or a file named like another head's published weights,
    is an error naming that head (a local file named like a backbone's is left to the strict load)."""
    from samkit.backbones.registry import BackboneSpec
    from samkit.registry import list_specs

    text, filename = str(checkpoint), Path(checkpoint).name
    if isinstance(known, BackboneSpec):
        own = set(known.known_ids)
    else:
        own = {known_id for item in (spec.weights if known is None else known) for known_id in item.known_ids}
    if text in own or filename in own:
        return
    is_file = Path(checkpoint).expanduser().is_file()
    for other in list_specs():
        if other.name == spec.name or (is_file and other.is_backbone):
            continue
        ids = {known_id for item in other.weights for known_id in item.known_ids}
        if text in ids or (is_file and filename in ids):
            if other.is_backbone:
                target = f"backbone {known.name!r}" if isinstance(known, BackboneSpec) else f"head {spec.name!r}"
                raise InputError(f"checkpoint {text!r} is the official checkpoint of backbone {other.name!r}, not of "
                                 f"{target}; use backbone {other.name!r} with it or a checkpoint of {target}")
            raise InputError(f"checkpoint {text!r} holds the weights of the head {other.name!r}, not of "
                             f"{spec.name!r}; load {other.name!r} with it, or give {spec.name!r} its own checkpoint")
