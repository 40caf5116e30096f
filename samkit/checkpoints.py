"""Safe checkpoint loading and saving.

Checkpoints are data, never code: ``.pt`` / ``.pth`` / ``.bin`` files load with
``torch.load(..., weights_only=True)`` and ``.safetensors`` files with safetensors. The official
wrappers are unwrapped (SAM 2's ``{"model": state_dict}``, training checkpoints'
``{"state_dict": ...}``, nested) and a DDP ``module.`` prefix is stripped, so every official file
loads strictly into the matching samkit / upstream module. Mismatches are reported by key name,
grouped by prefix, in an ``InputError`` naming the file.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samkit.errors import InputError

if TYPE_CHECKING:
    import torch

SAFETENSORS_SUFFIX = ".safetensors"
WRAPPER_KEYS = ("model", "state_dict")
DDP_PREFIX = "module."
WEIGHTS_ONLY_REFUSAL = "Weights only load failed"
MAX_GROUPS_SHOWN = 12
EXPECTED_FORMAT = (
    "a PyTorch state_dict (str -> tensor), optionally wrapped as {'model': ...} or {'state_dict': ...}, "
    "saved with torch.save (.pt/.pth/.bin) or safetensors (.safetensors)"
)


class UntrainedWeightsWarning(UserWarning):
    """A model was built without a checkpoint: its weights are random and its outputs meaningless."""


def warn_untrained(name: str) -> None:
    """Tell the user that ``name`` runs on random weights (checkpoint=None)."""
    warnings.warn(
        f"samkit: {name!r} was built with checkpoint=None, so its weights are random (untrained) and its masks "
        "are meaningless; pass checkpoint=<file or official id> for real predictions",
        UntrainedWeightsWarning,
        stacklevel=3,
    )


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict, without running any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint file {path} does not exist; expected {EXPECTED_FORMAT}")
    raw = _read_safetensors(path) if path.suffix == SAFETENSORS_SUFFIX else _read_torch(path)
    return _flatten(raw, path)


def _read_torch(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if WEIGHTS_ONLY_REFUSAL in str(error):
            raise InputError(
                f"refused to load checkpoint {path}: it contains pickled Python objects that would run code "
                "on load, and a checkpoint must never run code. Re-save it as a plain state_dict "
                "(torch.save(model.state_dict(), ...)) or as .safetensors"
            ) from None
        raise InputError(f"checkpoint {path} is not a readable PyTorch file ({error}); expected {EXPECTED_FORMAT}") from None
    except Exception as error:  # noqa: BLE001 - a corrupt pickle can fail with any exception type
        raise InputError(
            f"checkpoint {path} is not a readable PyTorch file ({type(error).__name__}: {error}); "
            f"expected {EXPECTED_FORMAT}"
        ) from None


def _read_safetensors(path: Path) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise InputError(f"checkpoint {path} is not a readable safetensors file ({error})") from None


def _flatten(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    state = raw
    while isinstance(state, Mapping) and not _is_state_dict(state):
        wrapped = next((state[key] for key in WRAPPER_KEYS if isinstance(state.get(key), Mapping)), None)
        if wrapped is None:
            break
        state = wrapped
    if not isinstance(state, Mapping) or not state:
        raise InputError(f"checkpoint {path} holds {type(raw).__name__}, not a state_dict; expected {EXPECTED_FORMAT}")
    bad = [str(key) for key, value in state.items() if not (isinstance(key, str) and isinstance(value, torch.Tensor))]
    if bad:
        raise InputError(
            f"checkpoint {path} is not a state_dict: entries {bad[:5]} are not tensors "
            f"(top-level keys: {list(raw)[:10] if isinstance(raw, Mapping) else type(raw).__name__}); "
            f"expected {EXPECTED_FORMAT}"
        )
    if all(key.startswith(DDP_PREFIX) for key in state):
        return {key[len(DDP_PREFIX):]: value for key, value in state.items()}
    return dict(state)


def _is_state_dict(mapping: Mapping) -> bool:
    import torch

    return all(isinstance(value, torch.Tensor) for value in mapping.values())


@dataclass(frozen=True)
class LoadReport:
    """Keys left out when loading with ``strict=False`` (both empty after a strict load)."""

    missing: list[str]
    unexpected: list[str]


def group_keys(keys: list[str]) -> list[tuple[str, int, str]]:
    """Group state_dict keys by prefix: ``(prefix, count, example key)``, largest groups first.

    The prefix ends at the first numeric component (``image_encoder.trunk.blocks.*``); keys without
    one group under their parent module (``sam_mask_decoder.iou_token.*``); top-level keys stand alone.
    """
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        if index is not None:
            prefix = ".".join(parts[:index] + ["*"])
        elif len(parts) > 1:
            prefix = ".".join(parts[:-1] + ["*"])
        else:
            prefix = key
        counts[prefix] += 1
        examples.setdefault(prefix, key)
    return [(prefix, count, examples[prefix]) for prefix, count in counts.most_common()]


def describe_keys(keys: list[str]) -> str:
    """``prefix: N keys (e.g. full.key)`` lines for an error message."""
    groups = group_keys(keys)
    lines = [
        f"  {prefix}: {count} key{'s' if count != 1 else ''}" + (f" (e.g. {example})" if example != prefix else "")
        for prefix, count, example in groups[:MAX_GROUPS_SHOWN]
    ]
    if len(groups) > MAX_GROUPS_SHOWN:
        lines.append(f"  ... and {len(groups) - MAX_GROUPS_SHOWN} more groups")
    return "\n".join(lines)


def load_into(
    model: torch.nn.Module,
    state_dict_or_path: Mapping[str, torch.Tensor] | str | os.PathLike[str],
    *,
    strict: bool = True,
    what: str = "model",
) -> LoadReport:
    """Load a state_dict (or a checkpoint file) into ``model``; mismatches raise InputError by key name.

    Shape mismatches are always an error; missing / unexpected keys are an error when ``strict``.
    """
    if isinstance(state_dict_or_path, Mapping):
        state_dict, source = dict(state_dict_or_path), "the given state_dict"
    else:
        state_dict, source = load_state_dict(state_dict_or_path), f"checkpoint {Path(state_dict_or_path)}"
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"  {key}: checkpoint {tuple(state_dict[key].shape)} vs {what} {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    problems = []
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}), in the {what} but not in the checkpoint:\n{describe_keys(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}), in the checkpoint but not the {what}:\n"
                        f"{describe_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}):\n" + "\n".join(mismatched[:MAX_GROUPS_SHOWN]))
    if problems:
        raise InputError(
            f"{source} does not match the {what} ({type(model).__name__}):\n" + "\n".join(problems)
            + "\nCheck that the checkpoint belongs to this backbone / head and image size."
        )
    model.load_state_dict(state_dict, strict=strict)
    return LoadReport(missing=missing, unexpected=unexpected)


def save_checkpoint(path: str | os.PathLike[str], state_dict: Mapping[str, torch.Tensor], **extra: Any) -> Path:
    """Write ``{"model": state_dict, **extra}`` atomically (temp file in the same folder + os.replace).

    A ``.safetensors`` path stores the bare state_dict; ``extra`` then becomes string metadata.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if path.suffix == SAFETENSORS_SUFFIX:
            from safetensors.torch import save_file

            tensors = {key: value.detach().clone().contiguous() for key, value in state_dict.items()}
            save_file(tensors, temp_name, metadata={key: str(value) for key, value in extra.items()} or None)
        else:
            import torch

            torch.save({"model": dict(state_dict), **extra}, temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
