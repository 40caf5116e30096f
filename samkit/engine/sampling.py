"""Seeded, resumable, rank-sharded sampling, and per-sample RNG seeding.

Training: epoch e shuffles the dataset with a permutation seeded by (seed, e) and cuts it into
global batches of ``batch_size`` (the last partial batch is dropped); rank r takes every
``world_size``-th sample of each global batch. So the global batch at step t is the same set of
samples for any number of ranks, and the position in the data is the step count alone: resuming
at step t restarts at epoch ``t // steps_per_epoch``, batch ``t % steps_per_epoch``.

Each sample is loaded with ``random``, ``numpy.random`` and ``torch`` seeded from (seed, epoch,
index) and the caller's RNG states restored afterwards, so augmentations do not depend on the
number of ranks or DataLoader workers, nor on where a run was interrupted.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from samkit.errors import InputError

TRAIN_STREAM = 0
EVAL_STREAM = 1
UINT32_BITS = 32

SampleKey = tuple[int, int]
"""(dataset index, 64-bit seed for that sample)."""


def sample_seed(*parts: int) -> int:
    """A 64-bit seed derived from integers with numpy's SeedSequence (well mixed, stable)."""
    high, low = np.random.SeedSequence([int(part) for part in parts]).generate_state(2, dtype=np.uint32)
    return (int(high) << UINT32_BITS) | int(low)


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Full global batches in one pass over ``num_samples`` samples."""
    steps = num_samples // batch_size
    if steps == 0:
        raise InputError(f"the training set has {num_samples} samples, fewer than one batch of {batch_size}")
    return steps


class TrainBatchSampler(Sampler[list[SampleKey]]):
    """This rank's share of each global batch of one epoch, starting at batch ``start``."""

    def __init__(self, num_samples: int, batch_size: int, *, rank: int, world_size: int, seed: int,
                 epoch: int, start: int = 0) -> None:
        if batch_size % world_size:
            raise InputError(
                f"engine.batch_size {batch_size} (global) must be divisible by the number of processes {world_size}"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, epoch
        self.steps = steps_per_epoch(num_samples, batch_size)
        if not 0 <= start <= self.steps:
            raise InputError(f"sampler start {start} is outside the epoch's {self.steps} batches")
        self.start = start

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[SampleKey]]:
        order = np.random.default_rng([self.seed, TRAIN_STREAM, self.epoch]).permutation(self.num_samples)
        for step in range(self.start, self.steps):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size].tolist()
            yield [(index, sample_seed(self.seed, TRAIN_STREAM, self.epoch, index))
                   for index in batch[self.rank::self.world_size]]


def eval_shard(num_samples: int, rank: int, world_size: int) -> list[int]:
    """The evaluation samples of one rank: every ``world_size``-th, no padding, no duplicates."""
    return list(range(rank, num_samples, world_size))


class EvalBatchSampler(Sampler[list[SampleKey]]):
    """Batches of this rank's evaluation shard, in index order, with per-sample seeds."""

    def __init__(self, num_samples: int, batch_size: int, *, rank: int, world_size: int, seed: int) -> None:
        self.indices = eval_shard(num_samples, rank, world_size)
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for start in range(0, len(self.indices), self.batch_size):
            chunk = self.indices[start:start + self.batch_size]
            yield [(index, sample_seed(self.seed, EVAL_STREAM, index)) for index in chunk]


class SeededDataset(Dataset):
    """Loads ``dataset[index]`` with every global RNG seeded for that sample, then restores the RNGs."""

    def __init__(self, dataset: Any) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise InputError(f"a task dataset must be map-style (__len__ and __getitem__), got {type(dataset).__name__}")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: SampleKey) -> Any:
        index, seed = key
        python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            random.seed(seed)
            np.random.seed(seed >> UINT32_BITS)
            torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed also queues CUDA seeding
            return self.dataset[index]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            torch.set_rng_state(torch_state)
