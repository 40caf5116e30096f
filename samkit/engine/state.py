"""Training state on disk: atomic checkpoints, RNG states as plain tensors, and the JSONL metrics log.

A training checkpoint (``last.pt``) is ``{"model": state_dict, "optimizer", "scheduler", "rng"
(one entry per rank), "step", "sampler", "best", "engine", "world_size", "format"}``, written
atomically and made only of tensors and plain Python types, so it loads with
``torch.load(weights_only=True)``. Its ``model`` entry also loads with
``samkit.checkpoints.load_state_dict`` / ``load_into`` like any other samkit checkpoint.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samkit.checkpoints import _read_torch, save_checkpoint
from samkit.errors import InputError
from samkit.io.atomic import atomic_write_text

CHECKPOINT_FORMAT = "samkit-engine-1"
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"
LOG_NAME = "metrics.jsonl"
RESULTS_NAME = "results.json"


def capture_rng() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) RNG states as tensors and plain values."""
    version, python_state, gauss = random.getstate()
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Undo ``capture_rng``: set every RNG back to the captured state."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(path: Path, model_state: Mapping[str, torch.Tensor], **state: Any) -> Path:
    """Write a training checkpoint atomically (see the module docstring for the layout)."""
    return save_checkpoint(path, model_state, format=CHECKPOINT_FORMAT, **state)


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``; another kind of file is an InputError."""
    if not path.is_file():
        raise InputError(f"training checkpoint {path} does not exist")
    checkpoint = _read_torch(path)
    if not isinstance(checkpoint, Mapping) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"{path} is not a samkit training checkpoint (format {CHECKPOINT_FORMAT!r}); "
            "resume needs the last.pt that samkit.engine.train wrote"
        )
    return dict(checkpoint)


def _plain(value: Any) -> Any:
    """JSON-safe: tensors and numpy scalars become floats / ints, NaN / inf become strings."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
        return _plain(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_results(path: Path, results: Mapping[str, Any]) -> Path:
    """Write a results JSON file atomically (sorted keys, indented)."""
    return atomic_write_text(path, json.dumps(_plain(results), indent=2, sort_keys=True) + "\n")


class MetricsLog:
    """Append-only JSONL log, one record per line, each line written with one ``write`` and flushed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(_plain(record), sort_keys=True) + "\n")
            handle.flush()

    def records(self) -> list[dict[str, Any]]:
        """The complete records (a torn last line from a killed run is skipped)."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (by a run killed after its last checkpoint); atomic."""
        kept = [record for record in self.records() if record.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in kept))
