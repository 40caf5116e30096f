"""samkit.engine: the training / evaluation machinery shared by the trainable heads.

``train(config, task=...)`` and ``evaluate(config, task=..., checkpoint=...)``; a head plugs in
through the ``Task`` protocol (``samkit.engine.task``). Importing this package is light: torch
loads when ``train`` / ``evaluate`` are first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from samkit.engine.config import EngineConfig, Experiment, read_experiment
from samkit.engine.task import HEADS, Task, build_task, check_task

_LAZY = {
    "train": "samkit.engine.trainer",
    "TrainResult": "samkit.engine.trainer",
    "evaluate": "samkit.engine.evaluation",
}

__all__ = ["HEADS", "EngineConfig", "Experiment", "Task", "TrainResult", "build_task", "check_task", "evaluate",
           "read_experiment", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samkit.engine' has no attribute {name!r}")
