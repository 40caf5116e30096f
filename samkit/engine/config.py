"""Experiment configs: an ``engine:`` section (validated ``EngineConfig``) and a free ``task:`` section.

An experiment YAML holds exactly two top-level keys::

    engine:            # how to train: read into EngineConfig, unknown keys are an error
      output_dir: runs/pascal_fold0
      epochs: 300
      batch_size: 8    # global: split evenly over the ranks
      lr: 1.0e-3
    task:              # what to train: handed unchanged to the head's task factory
      dataset: pascal
      fold: 0

Importing this module is light (no torch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from samkit.config import read_config
from samkit.errors import InputError

TOP_LEVEL_KEYS = ("engine", "task")
SCHEDULES = ("poly", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
BEST_MODES = ("max", "min")
DEFAULT_SEED = 321
DEFAULT_POLY_POWER = 0.9
DEFAULT_WARMUP_FACTOR = 1e-3
DEFAULT_BETAS = (0.9, 0.999)
DEFAULT_EPS = 1e-8
DEFAULT_LOG_EVERY = 10
FLOAT_FIELDS = ("lr", "weight_decay", "eps", "poly_power", "min_lr", "warmup_factor", "clip_grad_norm")


@dataclass(frozen=True)
class EngineConfig:
    """How to train and evaluate; every field is checked on construction.

    * ``output_dir``: checkpoints (``last.pt``, ``best.pt``), ``metrics.jsonl`` and result files.
    * ``epochs`` or ``iterations`` (exactly one): run length. One iteration = one optimizer step on
      one global batch; an epoch = ``len(train set) // batch_size`` iterations (the last partial
      batch is dropped).
    * ``batch_size``: the global batch, split evenly over the ranks (so results do not depend on the
      number of processes); ``eval_batch_size`` is per rank.
    * ``lr``, ``weight_decay``, ``betas``, ``eps``: AdamW.
    * ``schedule``: ``poly`` (``lr * (1 - (t + poly_offset) / T) ** poly_power`` at 0-based step t of
      T, floored at ``min_lr``) or ``constant``. ``warmup_iterations`` W > 0 multiplies the first W
      steps by a factor rising linearly from ``warmup_factor`` to 1. ``poly_offset: 1`` is the
      FSSAM code's convention (its step t uses ``(t + 1) / T``, so the last step runs at lr 0).
    * ``clip_grad_norm``: clip the global gradient norm to this (``None``: no clipping).
    * ``precision``: ``auto`` = bf16 autocast on CUDA, fp32 on CPU; ``bf16`` on a CPU run falls back
      to fp32 with a warning; ``fp32`` everywhere.
    * ``seed``: model initialisation, shuffling and per-sample augmentation seeds.
    * ``eval_every_epochs`` / ``eval_every_iterations`` / ``eval_last_epochs``: when to validate
      (at the end of every k-th epoch, every k iterations, and at the end of each of the last n
      epochs); the final step is always validated when the task has a validation set.
    * ``eval_mid_epoch_from``: also validate in the middle of every epoch from this (0-based) epoch
      on, after iteration ``round(n / 2) + 1`` of ``n``, where the official FSSAM code does (``null``: never).
    * ``early_stop_epochs``: stop when this many whole epochs have passed since ``best_metric``
      last improved (the official FSSAM ``stop_interval``; ``null``: run to the end).
    * ``checkpoint_every_iterations``: extra ``last.pt`` saves; ``last.pt`` is also written at each
      epoch end, after each validation and at the end.
    * ``best_metric`` / ``best_mode``: the validation metric that selects ``best.pt`` (``None``:
      no best checkpoint) and whether larger (``max``) or smaller (``min``) is better.
    * ``workers``: DataLoader worker processes per rank.
    * ``find_unused_parameters``: passed to DistributedDataParallel (heads whose forward leaves
      some trainable parameters without a gradient need it).
    * ``device``: ``auto`` picks CUDA when available; ``progress``: tqdm bars on rank 0.
    """

    output_dir: str
    batch_size: int
    lr: float
    epochs: int | None = None
    iterations: int | None = None
    weight_decay: float = 0.0
    betas: tuple[float, float] = DEFAULT_BETAS
    eps: float = DEFAULT_EPS
    schedule: str = "poly"
    poly_power: float = DEFAULT_POLY_POWER
    poly_offset: int = 0
    min_lr: float = 0.0
    warmup_iterations: int = 0
    warmup_factor: float = DEFAULT_WARMUP_FACTOR
    clip_grad_norm: float | None = None
    precision: str = "auto"
    seed: int = DEFAULT_SEED
    eval_every_epochs: int | None = 1
    eval_every_iterations: int | None = None
    eval_last_epochs: int = 0
    eval_mid_epoch_from: int | None = None
    early_stop_epochs: int | None = None
    eval_batch_size: int = 1
    checkpoint_every_iterations: int | None = None
    log_every_iterations: int = DEFAULT_LOG_EVERY
    best_metric: str | None = None
    best_mode: str = "max"
    workers: int = 0
    find_unused_parameters: bool = False
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.output_dir, (str, Path)) or not str(self.output_dir):
            raise InputError(f"engine.output_dir must be a folder path, got {self.output_dir!r}")
        object.__setattr__(self, "output_dir", str(self.output_dir))
        if (self.epochs is None) == (self.iterations is None):
            raise InputError(
                f"engine needs exactly one of 'epochs' and 'iterations', got epochs={self.epochs!r}, "
                f"iterations={self.iterations!r}"
            )
        for name in ("epochs", "iterations", "eval_every_epochs", "eval_every_iterations",
                     "checkpoint_every_iterations", "early_stop_epochs"):
            _check_int(name, getattr(self, name), minimum=1, optional=True)
        _check_int("eval_mid_epoch_from", self.eval_mid_epoch_from, minimum=0, optional=True)
        for name in ("batch_size", "eval_batch_size", "log_every_iterations"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("warmup_iterations", "eval_last_epochs", "workers", "poly_offset"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_int("seed", self.seed, minimum=0)
        _check_number("lr", self.lr, positive=True)
        for name in ("weight_decay", "min_lr", "poly_power"):
            _check_number(name, getattr(self, name))
        _check_number("eps", self.eps, positive=True)
        _check_number("clip_grad_norm", self.clip_grad_norm, positive=True, optional=True)
        if not _is_number(self.warmup_factor) or not 0 < self.warmup_factor <= 1:
            raise InputError(f"engine.warmup_factor must be in (0, 1], got {self.warmup_factor!r}")
        if self.min_lr > self.lr:
            raise InputError(f"engine.min_lr ({self.min_lr}) must not exceed engine.lr ({self.lr})")
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(_is_number(beta) and 0 <= beta < 1 for beta in betas):
            raise InputError(f"engine.betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        for name, allowed in (("schedule", SCHEDULES), ("precision", PRECISIONS), ("device", DEVICES),
                              ("best_mode", BEST_MODES)):
            if getattr(self, name) not in allowed:
                raise InputError(f"engine.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.best_metric is not None and (not isinstance(self.best_metric, str) or not self.best_metric):
            raise InputError(f"engine.best_metric must be a metric name or null, got {self.best_metric!r}")
        if self.early_stop_epochs is not None and self.best_metric is None:
            raise InputError("engine.early_stop_epochs needs engine.best_metric (the metric whose improvement it waits for)")
        for name in ("find_unused_parameters", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"engine.{name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EngineConfig:
        """Build from a mapping; unknown or missing keys raise InputError naming them."""
        if not isinstance(values, Mapping):
            raise InputError(f"the 'engine' section must be a mapping, got {type(values).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise InputError(f"unknown engine settings {unknown}; known settings: {sorted(known)}")
        required = [field.name for field in fields(cls)
                    if field.default is dataclasses.MISSING and field.name not in values]
        if required:
            raise InputError(f"the 'engine' section lacks required settings {required}")
        return cls(**{key: _yaml_float(value) if key in FLOAT_FIELDS else value for key, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists for tuples), so it fits in JSON and a weights-only checkpoint."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> EngineConfig:
        """A validated copy with ``changes`` applied (e.g. a new output_dir)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Experiment:
    """A whole experiment file: engine settings plus the task section for the head's factory."""

    engine: EngineConfig
    task: dict[str, Any]


def read_experiment(source: str | Path | Mapping[str, Any] | Experiment) -> Experiment:
    """Read an experiment YAML (or dict) into an ``Experiment``; unknown top-level keys are an error."""
    if isinstance(source, Experiment):
        return source
    raw = read_config(source)
    unknown = sorted(str(key) for key in raw if key not in TOP_LEVEL_KEYS)
    if unknown:
        raise InputError(f"unknown top-level experiment keys {unknown}; expected {list(TOP_LEVEL_KEYS)}")
    if "engine" not in raw:
        raise InputError("the experiment config lacks its 'engine' section (output_dir, batch_size, lr, ...)")
    task = raw.get("task") or {}
    if not isinstance(task, Mapping):
        raise InputError(f"the 'task' section must be a mapping, got {type(task).__name__}")
    return Experiment(engine=EngineConfig.from_dict(raw["engine"]), task=dict(task))


def _yaml_float(value: object) -> object:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: accept it as the number it spells."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: object, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        suffix = " or null" if optional else ""
        raise InputError(f"engine.{name} must be an integer >= {minimum}{suffix}, got {value!r}")


def _check_number(name: str, value: object, *, positive: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not _is_number(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise InputError(f"engine.{name} must be a finite number {bound}, got {value!r}")
