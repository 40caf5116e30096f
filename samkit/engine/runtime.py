"""Small run-time helpers shared by training and evaluation: loaders, devices, precision, progress."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from samkit.engine.config import EngineConfig
from samkit.engine.distributed import DistContext
from samkit.engine.sampling import SeededDataset
from samkit.engine.task import Task, collate_fn


def make_loader(dataset: Any, batch_sampler: Sampler, task: Task, config: EngineConfig) -> DataLoader:
    """A DataLoader over ``dataset`` (seeded per sample) driven by ``batch_sampler``.

    It gets its own generator so that creating it never draws from the global torch RNG (which
    would make a resumed run diverge from an uninterrupted one).
    """
    return DataLoader(
        SeededDataset(dataset),
        batch_sampler=batch_sampler,
        collate_fn=collate_fn(task),
        num_workers=config.workers,
        generator=torch.Generator().manual_seed(config.seed),
    )


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts / lists / tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(value, device) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def autocast_for(config: EngineConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (precision auto / bf16), fp32 otherwise."""
    if device.type == "cuda" and config.precision in ("auto", "bf16"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    if config.precision == "bf16":
        warnings.warn("engine.precision is 'bf16' but this run is on the CPU: running in fp32", stacklevel=2)
    return contextlib.nullcontext()


def progress(iterable: Iterable, context: DistContext, config: EngineConfig, **tqdm_kwargs: Any) -> Iterable:
    """A tqdm bar on rank 0 (when ``config.progress``), the bare iterable elsewhere."""
    if not (config.progress and context.is_main):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, **tqdm_kwargs)
